"""SIGKILL rounds of every service under load; the invariants hold, read from the streams.

Every service runs as `fleet run SERVICE` processes against one nats-server: the
singletons (cost-guard, provisioner, scaler, brain) as a holder and a standby on one
store, the watcher and the gateway alone (started again when killed, as `fleet up`'s
supervisor does). Load comes from the simulated marketplace's daily curve with bursts
(watcher -> scaler -> cost-guard -> provisioner) and from provision and release
requests published twice a second. Round after round, the active instance of each
service is SIGKILLed (no lease release, no drain), and the time until another one is
ready is measured. Then, once the fleet has settled:

- one verdict per request: every request in FLEET_CMDS has exactly one final verdict;
- units equal approvals: every slot of an approved command is a unit or was ended (a
  command that gave up), no command got more units than it was approved for, and no
  more units were created than approved;
- no leaked unit: every unit at the provider is one the provisioner counts as live;
- spend within the caps: the burn never passed `max_burn_usd_per_hour`, and today's
  spend is within the hard cap;
- each takeover (kill to another instance ready) within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.commands import ProvisionRequest, ReleaseRequest
from services.kit.service import encode
from services.provisioner.providers.simhost import stop_host
from tests.chaos.fleet_procs import ALONE, SINGLETONS, Fleet
from tests.chaos.invariants import judge_streams, leaked, read

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

ROUNDS = 4
ORDER = ("costguard", "provisioner", "scaler", "watcher", "brain", "gateway")
TAKEOVER_S = 5.0
MAX_BURN = 30.0
HARD_CAP = 1100.0
CONFIG = f"""
[budget]
daily_usd = 1000.0
hard_cap_usd = {HARD_CAP}
max_burn_usd_per_hour = {MAX_BURN}
approval_threshold_usd_per_hour = 1000.0
rate_limit_per_min = 1000
reservation_timeout_s = 120

[pools.h100]
gpu_model = "H100"
providers = ["sim"]
max_usd_per_hour = 3.0
min = 1
max = 20
unit_capacity = 8
target_utilization = 0.7
lead_time_s = 4
cooldown_up_s = 3
cooldown_down_s = 10

[providers.sim]
kind = "sim"
boot_delay_s = [1.0, 3.0]
failure_rate = 0.02

[sim]
telemetry_interval_s = 1.0

[sim.load.h100]
base = 6.0
peak = 60.0
period_s = 120
burst_every_s = 50
burst_factor = 2.0
burst_s = 10

[provisioner]
reconcile_interval_s = 5
boot_poll_s = 0.5
"""


class Load:
    """Provision and release requests from an operator, twice a second."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        js = self.nc.jetstream()
        while not self._stop.is_set():
            n = self.sent
            cmd: ProvisionRequest | ReleaseRequest
            if n % 3 == 2:
                cmd = ReleaseRequest(id=f"op-{n}", requester="chaos", pool="h100", count=1)
                subject = subjects.RELEASE_REQUESTED
            else:
                cmd = ProvisionRequest(id=f"op-{n}", requester="chaos", pool="h100", count=1)
                subject = subjects.PROVISION_REQUESTED
            with contextlib.suppress(Exception):
                await js.publish(subject, encode(cmd), headers={"Nats-Msg-Id": cmd.id})
                self.sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def wait_for(cond_async: object, timeout_s: float, what: str) -> None:
    give_up = time.monotonic() + timeout_s
    while not await cond_async():  # type: ignore[operator]
        if time.monotonic() > give_up:
            raise AssertionError(f"{what} not within {timeout_s} s")
        await asyncio.sleep(0.5)


async def test_sigkill_rounds_of_every_service_keep_the_invariants(
    nats_url: str, nc: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(CONFIG)
    fleet = Fleet(tmp_path, nats_url, config)
    verdicts_seen = 0

    async def on_verdict(_msg: Msg) -> None:
        nonlocal verdicts_seen
        verdicts_seen += 1

    sub = await nc.subscribe("fleet.budget.*", cb=on_verdict)
    load = Load(nc)
    try:
        await fleet.start()
        load.start()
        kills = 0
        for _ in range(ROUNDS):
            for service in ORDER:
                before = verdicts_seen
                await fleet.kill_active(service)
                kills += 1
                # the fleet keeps deciding between kills
                await wait_for(
                    _async(lambda b=before: verdicts_seen >= b + 2), 30, "verdicts after a kill"
                )
        await load.stop()

        js = nc.jetstream()

        async def all_judged() -> bool:
            cmds = await read(js, "FLEET_CMDS", ">")
            asked = {_id(d) for s, d in cmds if _is_request(s)}
            return asked <= {_id(d) for s, d in cmds if not _is_request(s)}

        await wait_for(all_judged, 60, "a verdict for every request")

        async def settled() -> bool:
            listed = await units_list(nc)
            if any(u["state"] == "requested" for u in listed):
                return False
            return not leaked(sim_units(tmp_path), listed)

        await wait_for(settled, 90, "no requested slot and no stray unit at the provider")

        # The fleet keeps scaling while the streams are read: a command published after
        # the commands were read may have units by the time the events are. Such units
        # are after the cut; a unit whose command was never published is not.
        cmds = await read(js, "FLEET_CMDS", ">")
        requests = [d for s, d in cmds if _is_request(s)]
        verdicts = [d for s, d in cmds if not _is_request(s)]
        events = [d for _, d in await read(js, "FLEET_EVENTS", "fleet.unit.>")]
        later = {_id(d) for s, d in await read(js, "FLEET_CMDS", ">") if _is_request(s)}
        after_cut = later - {_id(d) for d in requests}
        events = [d for d in events if json.loads(d).get("command_id") not in after_cut]
        report = judge_streams(requests, verdicts, events)
        budget = json.loads((await nc.request(subjects.api("budget"), b"{}", timeout=5)).data)
        strays = leaked(sim_units(tmp_path), await units_list(nc))
    finally:
        if nc.is_closed:  # say why, and let the first error be the one reported
            print(
                f"chaos: the test's own NATS connection closed: {nc.last_error!r}", file=sys.stderr
            )
        else:
            await sub.unsubscribe()
        await load.stop()
        fleet.stop()
        await asyncio.to_thread(stop_host, tmp_path / "state" / "provisioner")

    takeovers = {s: fleet.takeovers.get(s, []) for s in ORDER}
    singles = [t for s in SINGLETONS for t in takeovers[s]]
    restarts = [t for s in ALONE for t in takeovers[s]]
    every = singles + restarts
    per_service = ", ".join(f"{s} {len(t)}" for s, t in takeovers.items())
    lines = [
        f"chaos: {kills} SIGKILLs ({per_service})",
        f"  takeover (kill to another instance ready): p50 {statistics.median(every):.2f} s, "
        f"max {max(every):.2f} s; standbys p50 {statistics.median(singles):.2f} s, "
        f"max {max(singles):.2f} s; restarted services p50 {statistics.median(restarts):.2f} s, "
        f"max {max(restarts):.2f} s",
        f"  requests {report.requests} ({load.sent} from the load), verdicts "
        f"{report.verdicts} {dict(report.decisions)}, missing {len(report.missing)}, "
        f"doubled {len(report.doubled)}",
        f"  units: approved {report.approved_units}, created {report.created_units}, "
        f"over-created commands {len(report.over_created)}, slots unaccounted "
        f"{len(report.unaccounted)}, leaked {len(strays)}",
        f"  max burn ${report.max_burn_usd_per_hour:.2f}/h (cap ${MAX_BURN:.2f}/h), "
        f"spent today ${budget['spent_today_usd']:.4f} (hard cap ${HARD_CAP:.2f})",
    ]
    with capsys.disabled():  # the figures show in every run, not only a failing one
        print("\n" + "\n".join(lines))
    assert kills >= 20
    assert not report.missing, f"requests without a verdict: {report.missing[:10]}"
    assert not report.doubled, f"requests with two verdicts: {report.doubled[:10]}"
    assert not report.over_created, f"more units than approved: {report.over_created}"
    assert not report.unaccounted, f"slots neither made nor ended: {report.unaccounted}"
    assert report.created_units <= report.approved_units
    assert not strays, f"units at the provider the fleet does not count: {strays}"
    assert report.max_burn_usd_per_hour <= MAX_BURN + 1e-6
    assert budget["spent_today_usd"] <= HARD_CAP
    slow = {s: [round(t, 2) for t in ts if t > TAKEOVER_S] for s, ts in takeovers.items()}
    assert not any(slow.values()), f"takeovers over {TAKEOVER_S} s: {slow}"


def _is_request(subject: str) -> bool:
    """A command on FLEET_CMDS, not the cost-guard's verdict on one."""
    return not subject.startswith("fleet.budget.")


def _id(data: bytes) -> str:
    ident: str = json.loads(data)["id"]
    return ident


def _async(pred: object) -> object:
    async def check() -> bool:
        return bool(pred())  # type: ignore[operator]

    return check


async def units_list(nc: Client) -> list[dict[str, object]]:
    reply = await nc.request(subjects.api("units.list"), b'{"pool": "h100"}', timeout=5)
    units: list[dict[str, object]] = json.loads(reply.data)["units"]
    return units


def sim_units(base: Path) -> list[dict[str, object]]:
    path = base / "state" / "provisioner" / "sim-sim.json"
    try:
        rows: list[dict[str, object]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return rows
