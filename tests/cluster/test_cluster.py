"""A 3-node NATS cluster with R3 streams loses a node under load: nothing is lost.

Three nats-server processes with routes on 127.0.0.1; the streams and the lease bucket
are created with three replicas (`[nats] replicas = 3`). Two cost-guards (a holder and a
standby on one store, each connected to a different node; one that loses its lease is
started again, as its supervisor would) judge a stream of provision requests. Halfway,
the node that leads FLEET_CMDS is SIGKILLed. Every request whose publish JetStream acked
gets exactly one verdict, read back from the stream, and the clients that were connected
to the dead node are connected again within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.commands import ProvisionRequest, Verdict
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.bus import ensure_streams
from services.kit.config import load_settings
from services.kit.service import encode
from tests.cluster.nats_cluster import Cluster, ready, start_cluster
from tests.signing_helpers import signing
from tests.test_lease import until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REQUESTS = 200
RATE_PER_S = 20.0
KILL_AFTER = 60
RECONNECT_S = 5.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.stop()


def guard_settings(store: Path, url: str) -> CostguardSettings:
    return load_settings(
        CostguardSettings,
        env={},
        overrides={
            "nats": {"url": url, "replicas": 3},
            "signing": signing("costguard"),
            "store": {"dir": str(store)},
            "stop_deadline_s": 1.0,
            "budget": {
                "daily_usd": 1e6,
                "approval_threshold_usd_per_hour": 1e6,
                "rate_limit_per_min": 1e6,
                "offers_timeout_s": 0.2,
            },
            "pools": {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 3}},
        },
    )


class Guards:
    """The cost-guards: one per URL, each started again when it stops on a lost lease."""

    def __init__(self, store: Path, urls: list[str]) -> None:
        self.store, self.urls = store, urls
        self.live: list[CostGuard] = []
        self.restarts = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(url)) for url in self.urls]

    async def _keep(self, url: str) -> None:
        while not self._stop.is_set():
            guard = CostGuard(guard_settings(self.store, url), nats_url=url)
            self.live.append(guard)
            try:
                await guard.start()  # may fail while a leader is being elected
                await guard.stop_asked()
            except Exception:
                pass  # started again below, as a supervisor would
            finally:
                await guard.stop()
                self.live.remove(guard)
            if self._stop.is_set():
                return
            self.restarts += 1

    async def stop(self) -> None:
        self._stop.set()
        for guard in list(self.live):
            guard.request_stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wound_down(before: set[asyncio.Task[object]], within_s: float = 10.0) -> None:
    """Wait until the tasks the test started have ended: a client closed while it was
    reconnecting (a cost-guard that lost its lease to the election) cancels its own
    tasks, and they finish a few loop turns later."""
    give_up = time.monotonic() + within_s
    me = asyncio.current_task()
    while time.monotonic() < give_up:
        if all(t.done() for t in asyncio.all_tasks() - before if t is not me):
            return
        await asyncio.sleep(0.05)


async def publish_acked(js: nats.js.JetStreamContext, req: ProvisionRequest) -> float:
    """Publish until JetStream acks (a leader may be being elected); seconds it took."""
    started = time.monotonic()
    while True:
        try:
            await js.publish(
                subjects.PROVISION_REQUESTED,
                encode(req),
                headers={"Nats-Msg-Id": req.id},
                timeout=2.0,
            )
            return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > 60:
                raise
            await asyncio.sleep(0.2)


async def reconnected_within(nc: Client, dead_url: str, limit_s: float) -> float:
    """Seconds until `nc` is connected again to a server other than `dead_url`."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s * 4:
        url = nc.connected_url
        if nc.is_connected and url is not None and url.port != int(dead_url.rsplit(":", 1)[1]):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return float("inf")


async def verdicts(js: nats.js.JetStreamContext, want: int, timeout_s: float) -> list[Verdict]:
    """Every verdict in FLEET_CMDS, read until `want` are there or `timeout_s` passes."""
    sub = await js.pull_subscribe(
        "fleet.budget.*",
        durable=None,
        stream="FLEET_CMDS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    got: list[Verdict] = []
    give_up = time.monotonic() + timeout_s
    try:
        while len(got) < want and time.monotonic() < give_up:
            with contextlib.suppress(Exception):
                for msg in await sub.fetch(100, timeout=1.0):
                    got.append(msgspec.json.decode(msg.data, type=Verdict))
                    await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return got


async def test_a_node_killed_under_load_loses_nothing_and_clients_reconnect(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await ready(cluster)
    admin = await nats.connect(servers=[n.url for n in cluster.nodes])
    await ensure_streams(admin.jetstream(), replicas=3)
    leader = (await admin.jetstream().stream_info("FLEET_CMDS")).cluster.leader  # type: ignore[union-attr]
    victim = cluster.node(str(leader))
    others = [n for n in cluster.nodes if n is not victim]
    await admin.close()

    before = set(asyncio.all_tasks())
    guards = Guards(tmp_path / "guard", [victim.url, others[0].url])
    watcher = await nats.connect(victim.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    publisher = await nats.connect(
        servers=[n.url for n in others], max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    js = publisher.jetstream()
    await guards.start()
    stalls: list[float] = []
    acked: list[str] = []
    killed_at = 0.0
    try:
        await until(lambda: any(g.state == "ready" for g in guards.live), 60)
        guard_on_victim = next(g for g in guards.live if g.nats_url == victim.url)
        for i in range(REQUESTS):
            req = ProvisionRequest(id=f"c-{i:04d}", requester=f"load-{i % 7}", pool="h100")
            stalls.append(await publish_acked(js, req))
            acked.append(req.id)
            if i == KILL_AFTER:
                victim.kill()
                killed_at = time.monotonic()
                client_s, guard_s = await asyncio.gather(
                    reconnected_within(watcher, victim.url, RECONNECT_S),
                    reconnected_within(guard_on_victim.nc, victim.url, RECONNECT_S),
                )
            await asyncio.sleep(1 / RATE_PER_S)
        got = await verdicts(js, len(acked), timeout_s=90)
    finally:
        await guards.stop()
        await watcher.close()
        await publisher.close()
        await wound_down(before)

    per_request = Counter(v.id for v in got)
    missing = sorted(set(acked) - set(per_request))
    doubled = sorted(rid for rid, n in per_request.items() if n > 1)
    decisions = Counter(v.decision for v in got)
    with capsys.disabled():  # the figures show in every run, not only a failing one
        print(
            f"\ncluster: 3 nodes, R3 streams; killed {victim.name} (leader of FLEET_CMDS) "
            f"after {KILL_AFTER + 1} of {REQUESTS} requests\n"
            f"  published (acked) {len(acked)}, verdicts {len(got)} {dict(decisions)}, "
            f"missing {len(missing)}, doubled {len(doubled)}\n"
            f"  reconnect after the kill: client {client_s:.2f} s, cost-guard {guard_s:.2f} s; "
            f"longest publish (election) {max(stalls):.2f} s; cost-guard restarts "
            f"{guards.restarts}; total {time.monotonic() - killed_at:.1f} s after the kill"
        )
    assert not missing, f"{len(missing)} requests never got a verdict: {missing[:10]}"
    assert not doubled, f"requests with two verdicts: {doubled[:10]}"
    assert client_s <= RECONNECT_S and guard_s <= RECONNECT_S
