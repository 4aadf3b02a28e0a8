"""A `fleet up --secure` for the attack suites, and what an attacker and a checker need.

The fleet runs as a user runs it (a subprocess in a temp directory, the demo
config plus two tenants), so the attacks meet the very identities, seeds and
server permissions `fleet up --secure` generates. The admin identity checks the
effects (what the streams hold, what the provisioner did), never the attacker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.commands import ProvisionRequest, Verdict
from contracts.durables import DURABLES
from contracts.streams import FLEET_CMDS
from services.kit.bus import gather_replies

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tools" / "demo" / "fleet.toml"
SERVICES = ("watcher", "scaler", "costguard", "provisioner", "gateway", "brain")
TENANTS = ("acme", "globex")
ATTACKERS = (
    "watcher",
    "scaler",
    "provisioner",
    "gateway",
    "brain",
    "runner",
    "worker",
    "operator",
    "globex",
)
"""Every identity but the cost-guard (whose verdicts are the prize) and the admin."""
APPROVED_DURABLE = next(d for d in DURABLES if d.name == "provisioner-approved")


@dataclass
class SecureFleet:
    """A running `fleet up --secure`: where it is, and connections as any identity."""

    cwd: Path
    url: str
    clients: list[Client] = field(default_factory=list)

    @property
    def creds(self) -> Path:
        return self.cwd / ".fleet" / "creds"

    async def connect(self, who: str, errors: list[str] | None = None) -> Client:
        """Connect as identity `who`; the server's permission refusals go to `errors`."""

        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.append(str(exc))

        nc = await nats.connect(
            self.url,
            name=f"attack-{who}",
            nkeys_seed=str(self.creds / f"{who}.nk"),
            inbox_prefix=f"_INBOX.{who}",
            error_cb=on_error,
            allow_reconnect=False,
        )
        self.clients.append(nc)
        return nc

    async def close(self) -> None:
        for nc in self.clients:
            if not nc.is_closed:
                await nc.close()
        self.clients.clear()


def forged_verdict(marker: str, count: int = 1) -> bytes:
    """An approval the cost-guard never gave: `count` H100s in the demo pool."""
    request = ProvisionRequest(
        id=marker,
        ts=time.time(),
        requester="attacker",
        pool="h100",
        gpu_model="H100",
        count=count,
        reason="forged",
    )
    verdict = Verdict(
        id=marker,
        ts=time.time(),
        decision="approved",
        request=request,
        command=request,
        usd_per_hour=0.0,
        reason="forged",
    )
    return msgspec.json.encode(verdict)


async def refused(call: Any, timeout_s: float = 3.0) -> str:
    """Run an awaitable the server should refuse; the error it raised (the request of a
    refused publish goes nowhere, so it times out). Fails if the call succeeds."""
    try:
        await asyncio.wait_for(call, timeout_s)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("the server carried out a call it should have refused")


async def stored_since(nc: Client, stream: str, subject: str, start_seq: int) -> list[bytes]:
    """Every message on `subject` stored in `stream` from sequence `start_seq` on (admin)."""
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        filter_subject=subject,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    psub = await js.pull_subscribe(subject, stream=stream, config=config)
    out: list[bytes] = []
    try:
        while True:
            try:
                msgs = await psub.fetch(200, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            out.extend(m.data for m in msgs)
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
    return out


async def last_seq(nc: Client, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.last_seq or 0)


async def provisioner_caught_up(admin: Client, timeout_s: float = 20.0) -> None:
    """Wait until the provisioner has taken and settled every approval stored so far: after
    it, a forged approval that reached FLEET_CMDS would have been carried out."""
    js = admin.jetstream()
    end = time.monotonic() + timeout_s
    while True:
        info = await js.consumer_info(FLEET_CMDS.name, APPROVED_DURABLE.name)
        if not info.num_pending and not info.num_ack_pending:
            return
        if time.monotonic() > end:
            raise AssertionError(f"the provisioner is behind on approvals: {info}")
        await asyncio.sleep(0.2)


async def units_of_command(operator: Client, command_id: str) -> list[dict[str, Any]]:
    """The provisioner's units created for `command_id` (fleet.api.units.list)."""
    reply = await operator.request("fleet.api.units.list", b"{}", timeout=10)
    body = msgspec.json.decode(reply.data)
    units = body.get("units", body) if isinstance(body, dict) else body
    return [u for u in units if isinstance(u, dict) and u.get("command_id") == command_id]


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


async def _wait_ready(fleet: SecureFleet, deadline: float) -> None:
    operator = await fleet.connect("operator")
    try:
        while time.monotonic() < deadline:
            names = {str(r.get("name")) for r in await gather_replies(operator, "$SRV.PING")}
            if set(SERVICES) <= names:
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"fleet up --secure not ready: {sorted(names)}")
    finally:
        await fleet.close()


@contextlib.contextmanager
def running_secure_fleet(cwd: Path, extra_config: str = "") -> Iterator[SecureFleet]:
    """`fleet up --secure` in `cwd` with the demo config, tenants acme and globex."""
    config = cwd / "fleet.toml"
    tenants = ", ".join(f'"{t}"' for t in TENANTS)
    config.write_text(DEMO.read_text() + f"\n[nats]\ntenants = [{tenants}]\n" + extra_config)
    log = open(cwd / "up.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools", "up", "--secure", "--port", "0"],
        cwd=cwd,
        env=_env(cwd),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url_file = cwd / ".fleet" / "nats.url"
        deadline = time.monotonic() + 60
        while not url_file.is_file() and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError((cwd / "up.log").read_text())
            time.sleep(0.1)
        fleet = SecureFleet(cwd, url_file.read_text().strip())
        asyncio.run(_wait_ready(fleet, deadline))
        yield fleet
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


async def stream_exists(admin: Client, name: str) -> bool:
    try:
        await admin.jetstream().stream_info(name)
    except NotFoundError:
        return False
    return True
