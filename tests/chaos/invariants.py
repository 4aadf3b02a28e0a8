"""The chaos suite's invariants, read from the streams after the kills: one verdict per
request, no more units than approvals, no unit left at the provider that the fleet does
not know, and the burn never above its cap."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.commands import AnyCommand, ProvisionRequest, Verdict
from contracts.events import BILLED_STATES, TERMINAL_STATES, UnitEvent

REQUEST = msgspec.json.Decoder(AnyCommand)
VERDICT = msgspec.json.Decoder(Verdict)
EVENT = msgspec.json.Decoder(UnitEvent)
FINAL = ("approved", "denied")


async def read(js: JetStreamContext, stream: str, subject: str) -> list[tuple[str, bytes]]:
    """Every (subject, data) of `stream` matching `subject`, from the first message."""
    sub = await js.pull_subscribe(
        subject,
        durable=None,
        stream=stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    out: list[tuple[str, bytes]] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(512, timeout=1.0)
            except Exception:
                return out  # nothing more within a second: the stream is read
            for msg in msgs:
                out.append((msg.subject, msg.data))
                await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


@dataclass
class Report:
    """What the streams say, and what breaks an invariant."""

    requests: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    approved_units: int = 0
    created_units: int = 0
    over_created: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Approved commands with more units than approved: id -> (approved, created)."""
    unaccounted: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Approved commands whose slots are not each either a unit or an ended slot:
    id -> (approved, slots seen)."""
    max_burn_usd_per_hour: float = 0.0

    @property
    def verdicts(self) -> int:
        return sum(self.decisions.values())


def judge_streams(requests: list[bytes], verdicts: list[bytes], events: list[bytes]) -> Report:
    """The invariants over the raw messages of FLEET_CMDS and FLEET_EVENTS."""
    report = Report()
    asked = {REQUEST.decode(raw).id for raw in requests}
    report.requests = len(asked)
    finals: Counter[str] = Counter()
    approved: dict[str, int] = {}
    for raw in verdicts:
        verdict = VERDICT.decode(raw)
        report.decisions[verdict.decision] += 1
        if verdict.decision in FINAL:
            finals[verdict.id] += 1
        if verdict.decision == "approved" and isinstance(verdict.command, ProvisionRequest):
            approved[verdict.command.id] = verdict.command.count
    report.missing = sorted(asked - set(finals))
    report.doubled = sorted(rid for rid, n in finals.items() if n > 1)
    report.approved_units = sum(approved.values())
    decoded = [EVENT.decode(raw) for raw in events]
    created: dict[str, set[str]] = {}
    slots: dict[str, set[str]] = {}
    for ev in decoded:
        if ev.command_id:
            slots.setdefault(ev.command_id, set()).add(ev.unit)
        if ev.state in BILLED_STATES and ev.command_id:
            created.setdefault(ev.command_id, set()).add(ev.unit)
    for cid, count in approved.items():
        if len(slots.get(cid, ())) != count:
            report.unaccounted[cid] = (count, len(slots.get(cid, ())))
    report.created_units = sum(len(units) for units in created.values())
    for cid, units in created.items():
        if len(units) > approved.get(cid, 0):
            report.over_created[cid] = (approved.get(cid, 0), len(units))
    report.max_burn_usd_per_hour = max_burn(decoded)
    return report


def max_burn(events: list[UnitEvent]) -> float:
    """The highest USD/hour of units billing at once, by the events' own times: a unit
    bills from its first billed event to its terminal one."""
    steps: list[tuple[float, int, str, float]] = []
    seen: dict[str, float] = {}
    ended: set[str] = set()
    for ev in sorted(events, key=lambda e: e.ts):
        key = f"{ev.pool}/{ev.unit}"
        if ev.state in BILLED_STATES and key not in seen and key not in ended:
            seen[key] = ev.usd_per_hour
            steps.append((ev.ts, 1, key, ev.usd_per_hour))
        elif ev.state in TERMINAL_STATES and key not in ended:
            ended.add(key)
            if key in seen:
                steps.append((ev.ts, 0, key, seen[key]))
    burn = peak = 0.0
    for _ts, starts, _key, usd in sorted(steps, key=lambda s: (s[0], s[1])):
        burn += usd if starts else -usd
        peak = max(peak, burn)
    return round(peak, 6)


def leaked(at_provider: list[dict[str, Any]], listed: list[dict[str, Any]]) -> list[str]:
    """Units the provider has that the provisioner does not count as live."""
    live = {u["unit"] for u in listed if u["state"] in ("booting", "ready", "draining")}
    return sorted(str(u.get("unit")) for u in at_provider if u.get("unit") not in live)
