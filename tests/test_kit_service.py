"""The Service base as a service author and an operator see it: typed handlers,
dead letters for bad input, redelivery after a stop, health over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from contracts import subjects
from contracts.events import DeadLetter, UnitEvent
from contracts.telemetry import UnitTelemetry
from services.kit import ConfigError, Delivery, Service
from services.kit.config import KitSettings, load_settings
from services.kit.service import RequestError, encode


class Echo(msgspec.Struct):
    text: str
    times: int = 1


class Toy(Service):
    """Counts telemetry, records unit events, echoes requests; can be made to block."""

    name = "toy"

    def __init__(self, settings: KitSettings, url: str, durable: str = "toy-units") -> None:
        super().__init__(settings, nats_url=url)
        self.telemetry: list[UnitTelemetry] = []
        self.events: list[tuple[UnitEvent, int]] = []
        self.got_event = asyncio.Event()
        self.release = asyncio.Event()
        self.block = False
        self.durable = durable

    async def setup(self) -> None:
        await self.subscribe(subjects.TELEMETRY_ALL, UnitTelemetry, self.on_telemetry)
        await self.consume(subjects.UNIT_ALL, UnitEvent, self.on_event, durable=self.durable)
        await self.endpoint("echo", "toy.echo", Echo, self.on_echo)

    async def on_telemetry(self, msg: UnitTelemetry, d: Delivery) -> None:
        self.telemetry.append(msg)

    async def on_event(self, msg: UnitEvent, d: Delivery) -> None:
        self.events.append((msg, d.attempt))
        self.got_event.set()
        if self.block:
            await self.release.wait()

    async def on_echo(self, req: Echo, d: Delivery) -> dict[str, str]:
        if req.times > 10:
            raise RequestError(f"times={req.times} is too many; ask for at most 10")
        return {"echo": req.text * req.times}


@pytest.fixture
def settings(tmp_path: Path) -> KitSettings:
    return load_settings(
        KitSettings,
        env={},
        overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 0.5},
    )


async def test_bad_telemetry_is_dead_lettered_and_the_service_keeps_running(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = Toy(settings, nats_url)
    await svc.start()
    try:
        dead = await nc.subscribe("fleet.dead.>")
        bad = [
            b"{not json",
            b'{"pool": "p", "unit": "u", "inflight": "lots"}',
            b'{"pool": "p", "unit": "u", "utilization": 7.5}',
            b'{"pool": "p", "unit": "u", "inflight": -3}',
            os.urandom(1_000_000),
        ]
        for payload in bad:
            await nc.publish(subjects.telemetry("p", "u"), payload)
        letters = [msgspec.json.decode((await dead.next_msg(5)).data, type=DeadLetter) for _ in bad]
        await dead.unsubscribe()
        assert [x.subject for x in letters] == [subjects.telemetry("p", "u")] * len(bad)
        assert "malformed" in letters[0].reason.lower()
        assert "inflight" in letters[1].reason
        assert "utilization" in letters[2].reason
        assert letters[4].size == 1_000_000 and len(letters[4].preview) <= 1024
        assert svc.metrics.counts["dead"] == len(bad)

        good = UnitTelemetry(pool="p", unit="u", inflight=3, capacity=4, utilization=0.75)
        await nc.publish(subjects.telemetry("p", "u"), encode(good))
        await nc.flush()
        reply = await nc.request("fleet.svc.toy.status", b"", timeout=5)
        status = json.loads(reply.data)
        assert status["state"] == "ready"
        assert svc.telemetry == [good]
    finally:
        await svc.stop()


async def test_dead_letters_are_kept_in_the_dead_stream(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = Toy(settings, nats_url)
    await svc.start()
    try:
        js = nc.jetstream()
        await js.publish(subjects.unit("p", "u1"), b'{"pool":"p","unit":"u1","state":"exploded"}')
        sub = await js.pull_subscribe("fleet.dead.>", durable="check-dead")
        [msg] = await sub.fetch(1, timeout=5)
        letter = msgspec.json.decode(msg.data, type=DeadLetter)
        assert letter.subject == "fleet.unit.p.u1"
        assert "state" in letter.reason
        assert svc.events == []
    finally:
        await svc.stop()


async def test_stop_hands_back_in_flight_work_which_is_redelivered(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    first = Toy(settings, nats_url)
    first.block = True
    await first.start()
    event = UnitEvent(pool="p", unit="u1", state="ready")
    await nc.jetstream().publish(subjects.unit("p", "u1"), encode(event))
    await asyncio.wait_for(first.got_event.wait(), 5)
    await first.stop()  # handler still blocked: deadline passes, the message is nak'd
    assert first.state == "stopped"

    second = Toy(settings, nats_url)
    await second.start()
    try:
        await asyncio.wait_for(second.got_event.wait(), 10)
        assert second.events == [(event, 2)]
    finally:
        await second.stop()


async def test_requests_get_results_or_clear_errors(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = Toy(settings, nats_url)
    await svc.start()
    try:
        ok = await nc.request("toy.echo", b'{"text": "ab", "times": 2}', timeout=5)
        assert json.loads(ok.data) == {"echo": "abab"}
        bad = await nc.request("toy.echo", b'{"times": "two"}', timeout=5)
        assert json.loads(bad.data)["error"]["code"] == 400
        assert bad.headers and bad.headers["Nats-Service-Error-Code"] == "400"
        refused = await nc.request("toy.echo", b'{"text": "a", "times": 11}', timeout=5)
        assert "at most 10" in json.loads(refused.data)["error"]["message"]
        garbage = await nc.request("toy.echo", os.urandom(2000), timeout=5)
        assert json.loads(garbage.data)["error"]["code"] == 400
    finally:
        await svc.stop()


async def test_health_metrics_and_micro_discovery(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = Toy(settings, nats_url)
    await svc.start()
    try:
        base = f"http://127.0.0.1:{svc.http_port}"
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["state"] == "ready"
            metrics = await http.get(f"{base}/metrics")
            assert "fleet_service_ready" in metrics.text
        ping = await nc.request("$SRV.PING.toy", b"", timeout=5)
        assert json.loads(ping.data)["name"] == "toy"
    finally:
        await svc.stop()
    assert svc.state == "stopped"


def test_a_service_still_connecting_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools", "run", "scaler", "--nats", "nats://127.0.0.1:1"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "FLEET_LOG__LEVEL": "info"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is retrying the connection
            if "connecting to NATS" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_service_that_cannot_reach_nats_exits_saying_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "tools", "run", "scaler", "--nats", "nats://127.0.0.1:1"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(repo),
            "FLEET_NATS__CONNECT_DEADLINE_S": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in out.stderr


class ToySection(msgspec.Struct, kw_only=True):
    greeting: str = "hello"


class ToySettings(KitSettings, kw_only=True):
    toy: ToySection = msgspec.field(default_factory=ToySection)


class Typed(Service[ToySettings]):
    """A service whose settings type is its generic parameter; listens raw on a subject."""

    name = "typed"

    async def setup(self) -> None:
        self.heard: asyncio.Queue[bytes] = asyncio.Queue()
        await self.listen("typed.raw", self.on_raw)

    async def on_raw(self, msg: Msg) -> None:
        await self.heard.put(msg.data)


def test_a_service_reads_its_own_settings_type(tmp_path: Path) -> None:
    """`Service[ToySettings]` loads the `[toy]` section: fleet.run reads it, env overrides it."""
    config = tmp_path / "fleet.toml"
    config.write_text('[toy]\ngreeting = "hi"\n')
    assert Typed.settings_type is ToySettings
    svc = Typed(load_settings(Typed.settings_type, str(config), env={}))
    assert svc.settings.toy.greeting == "hi"
    with pytest.raises(ConfigError, match=r"toy\.greeting"):
        load_settings(Typed.settings_type, str(config), env={"FLEET_TOY__GREETING": "[1]"})


async def test_a_raw_subscription_ends_with_the_service(
    nats_url: str, nc: Client, settings: KitSettings
) -> None:
    svc = Typed(ToySettings(**msgspec.structs.asdict(settings)), nats_url=nats_url)
    await svc.start()
    try:
        await nc.publish("typed.raw", b"one")
        assert await asyncio.wait_for(svc.heard.get(), 5) == b"one"
    finally:
        await svc.stop()
    assert svc.stopping
    # Stopped: the subscription is gone from the server, so a request finds no responder.
    with pytest.raises(NoRespondersError):
        await nc.request("typed.raw", b"two", timeout=2)
