"""Fuzz every subject of the contract, through hypothesis, against a running fleet.

Every channel in `contracts.catalog` (fleet.api operations, A2A, commands, verdicts,
unit events, telemetry, jobs...) gets payloads a hostile or broken client could
send: random bytes, random JSON, the right object with fields dropped or of the
wrong type, empty bodies, a near-limit payload. The fleet runs in-process on its
own event loop in a thread (hypothesis drives examples synchronously), against the
session's real nats-server. What a user would notice is checked:

- every request gets an answer, and a body that does not decode as the contract's
  type is answered with an error (code 400), never run with defaults;
- every malformed message on a consumed stream subject is dead-lettered (on
  `fleet.dead.<subject>`) rather than dropped or crashing its consumer;
- at the end every service still answers its status endpoint and is `ready`, and
  the day's spend and burn stay inside the budget.

Run with `just suite fuzz` (or `.ci/suites fuzz`); `FUZZ_EXAMPLES` sets the count.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from contracts.catalog import Channel, all_channels
from contracts.events import DeadLetter
from services.kit.service import Service
from tests.conftest import _wipe_jetstream
from tests.fleet_helpers import fleet

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

T = TypeVar("T")
POOL = "h100"
POOLS = {POOL: {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10, "min": 1}}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
CONSUMED_STREAMS = {
    "metrics",
    "scaleProposed",
    "provisionRequested",
    "releaseRequested",
    "budgetApproved",
    "unit",
}
"""Stream channels a service of this fleet consumes and must dead-letter garbage on."""
SKIPPED = {"dead", "a2aTask", "jobEvent"}
"""Output-only streams no service reads (restricting who may publish them is the
secured deployment's job, `fleet up --secure`); fuzzing them proves nothing here."""
PARAMS = {
    "pool": st.sampled_from([POOL, "nosuchpool"]),
    "priority": st.sampled_from(["high", "normal", "low"]),
    "severity": st.sampled_from(["info", "warning", "critical"]),
    "agent": st.sampled_from(["fleet", "nosuchagent"]),
}
TOKEN = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True)


class FleetThread:
    """The fleet's services on an event loop of their own, in a daemon thread."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.services: list[Service[Any]] = []
        self.nc: Client | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        await _wipe_jetstream(self.url)
        self.services = fleet(self.url, self.tmp, POOLS, brain=True)
        for svc in self.services:
            await svc.start()
        self.nc = await nats.connect(self.url)

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()
        for svc in reversed(self.services):
            await svc.stop()


@pytest.fixture(scope="module")
def running(nats_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetThread]:
    fleet_thread = FleetThread(nats_server, tmp_path_factory.mktemp("fuzz"))
    fleet_thread.start()
    try:
        yield fleet_thread
    finally:
        fleet_thread.stop()


# -- payloads ---------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def fields_of(kind: Any) -> list[str]:
    try:
        return [f.encode_name for f in msgspec.structs.fields(kind)]
    except TypeError:
        return []


def shaped(kind: Any) -> st.SearchStrategy[bytes]:
    """The contract's object with some of its fields, each holding anything at all."""
    names = fields_of(kind) or ["id"]
    return st.dictionaries(st.sampled_from(names), JSON, max_size=len(names)).map(
        lambda d: json.dumps(d).encode()
    )


def payloads(kind: Any) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=256),
        JSON.map(lambda v: json.dumps(v).encode()),
        shaped(kind),
        shaped(kind),  # twice as likely: the near misses are what decoders get wrong
        st.sampled_from([b"", b" ", b"{}", b"null", b"[]", b'{"kind":"provision"}']),
        st.just(b'{"x":"' + b"a" * 600_000 + b'"}'),
    )


def subject_of(channel: Channel) -> st.SearchStrategy[str]:
    parts = re.split(r"(\{\w+\})", channel.address)
    pieces = [PARAMS.get(p[1:-1], TOKEN) if p.startswith("{") else st.just(p) for p in parts]
    return st.tuples(*pieces).map("".join)


CHANNELS = [c for c in all_channels() if c.key not in SKIPPED]
EXAMPLE = st.sampled_from(CHANNELS).flatmap(
    lambda c: st.tuples(st.just(c), subject_of(c), payloads(c.payload))
)


def decodes(payload: bytes, kind: Any) -> bool:
    try:
        msgspec.json.decode(payload, type=kind)
    except (msgspec.DecodeError, TypeError):
        return False
    return True


# -- the run ----------------------------------------------------------------------------
class Record:
    """What the run sent, to check the fleet's answers against."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.invalid_on: Counter[str] = Counter()
        self.unanswered: list[str] = []
        self.accepted_garbage: list[str] = []


async def send(nc: Client, channel: Channel, subject: str, payload: bytes, rec: Record) -> None:
    rec.sent[channel.key] += 1
    valid = decodes(payload, channel.payload)
    if channel.transport == "request":
        try:
            reply = await nc.request(subject, payload, timeout=10)
        except NoRespondersError:
            if channel.key not in {"unitPing", "a2aRpc", "a2aCard", "budgetDecide"}:
                rec.unanswered.append(f"{subject}: no responders")
            return
        except NatsTimeout:
            rec.unanswered.append(f"{subject}: no answer within 10 s")
            return
        if not valid and channel.key.startswith("api"):
            answer = _json(reply.data)
            if not (isinstance(answer, dict) and "error" in answer):
                rec.accepted_garbage.append(f"{subject} {payload[:80]!r} -> {reply.data[:120]!r}")
        return
    if channel.transport == "stream":
        try:
            await nc.jetstream().publish(subject, payload, timeout=10)
        except Exception:  # the stream refused it (too large, or no stream for a bad token)
            return
        if not valid and channel.key in CONSUMED_STREAMS and subject.count(".") >= 2:
            rec.invalid_on[subject] += 1
        return
    await nc.publish(subject, payload)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


async def dead_letters(nc: Client) -> Counter[str]:
    js = nc.jetstream()
    sub = await js.subscribe("fleet.dead.>", ordered_consumer=True)
    found: Counter[str] = Counter()
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except NatsTimeout:
                return found
            found[msgspec.json.decode(msg.data, type=DeadLetter).subject] += 1
    finally:
        await sub.unsubscribe()


def test_every_subject_survives_hostile_payloads(running: FleetThread) -> None:
    nc = running.nc
    assert nc is not None
    rec = Record()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(EXAMPLE)
    def one(example: tuple[Channel, str, bytes]) -> None:
        channel, subject, payload = example
        running.run(send(nc, channel, subject, payload, rec))

    one()

    assert not rec.unanswered, rec.unanswered[:10]
    assert not rec.accepted_garbage, rec.accepted_garbage[:10]

    async def settle() -> tuple[Counter[str], list[str], dict[str, Any]]:
        # Wait for the consumers to reach every message, then read the dead letters.
        missing: list[str] = []
        dead: Counter[str] = Counter()
        for _ in range(30):
            dead = await dead_letters(nc)
            missing = [s for s, n in rec.invalid_on.items() if dead[s] < n]
            if not missing:
                break
        alive = []
        for svc in running.services:
            reply = await nc.request(f"fleet.svc.{svc.name}.status", b"", timeout=5)
            if svc.state == "ready" and reply.data:
                alive.append(svc.name)
        budget = json.loads((await nc.request("fleet.api.budget", b"{}", timeout=5)).data)
        return dead, missing, {"alive": alive, "budget": budget}

    dead, missing, state = running.run(settle(), timeout=180)
    print(
        f"fuzz: {sum(rec.sent.values())} messages over {len(rec.sent)} channels; "
        f"{sum(rec.invalid_on.values())} malformed on consumed streams, "
        f"{sum(dead.values())} dead letters"
    )
    assert not missing, [(s, rec.invalid_on[s], dead[s]) for s in missing[:10]]
    assert sorted(state["alive"]) == sorted(s.name for s in running.services)
    budget = state["budget"]
    assert budget["spent_today_usd"] <= budget["hard_cap_usd"]
    assert budget["burn_usd_per_hour"] <= POOLS[POOL]["max_usd_per_hour"] + 1e-9
