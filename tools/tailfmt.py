"""One readable line per event for `fleet tail`: the fields that matter per subject."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

_STYLE = {
    "fleet.metrics": "cyan",
    "fleet.scale": "magenta",
    "fleet.provision": "blue",
    "fleet.release": "blue",
    "fleet.budget.approved": "green",
    "fleet.budget.denied": "red",
    "fleet.budget.held": "yellow",
    "fleet.unit": "bright_white",
    "fleet.alert": "bold red",
    "fleet.audit": "dim",
    "fleet.dead": "red",
    "fleet.job": "green",
    "fleet.telemetry": "dim cyan",
    "a2a": "bright_magenta",
}


def style_for(subject: str) -> str:
    best = ""
    for prefix in _STYLE:
        if subject.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return _STYLE.get(best, "")


def _usd(x: Any) -> str:
    return f"${float(x or 0):,.2f}"


def summary(subject: str, d: dict[str, Any]) -> str:
    """The few fields of `d` that tell what happened on `subject`."""
    g = d.get
    if subject.startswith("fleet.metrics."):
        return (
            f"ready={g('units_ready')} pending={g('units_pending')} inflight={g('inflight', 0):.0f}"
            f" queue={g('queue_depth', 0):.0f} util={g('utilization', 0):.0%}"
            f" rate={g('arrival_rate', 0):.1f}/s"
        )
    if subject.startswith("fleet.scale.proposed."):
        fc = f" forecast={g('forecast'):.0f}" if isinstance(g("forecast"), int | float) else ""
        return f"{g('current')}→{g('desired')} {g('mode')}{fc}: {g('reason', '')}"
    if subject == "fleet.provision.requested":
        return (
            f"{g('requester')} wants {g('count')} x {g('gpu_model')} in {g('pool')}"
            f" [{g('id')}]: {g('reason', '')}"
        )
    if subject == "fleet.release.requested":
        what = g("unit") or f"{g('count')} unit(s)"
        return f"{g('requester')} releases {what} of {g('pool')} [{g('id')}]: {g('reason', '')}"
    if subject.startswith("fleet.budget.decide."):  # an operator's DecideRequest, asked
        held = subject.removeprefix("fleet.budget.decide.")
        what = "approve" if g("approve") else "reject"
        why = f": {g('reason')}" if g("reason") else ""
        claimed = f"by {g('operator')} (as it claims; the audit names the signer)"
        return f"{what} asked for [{held}] {claimed}{why}"
    if subject.startswith("fleet.budget."):
        return (
            f"{str(g('decision', '')).upper()} [{g('id')}] {_usd(g('usd_per_hour'))}/h"
            f" spent {_usd(g('spent_today_usd'))} of {_usd(g('budget_usd'))}"
            f" projected {_usd(g('projected_today_usd'))}: {g('reason', '')}"
        )
    if subject.startswith("fleet.unit."):
        price = f" {_usd(g('usd_per_hour'))}/h" if g("usd_per_hour") else ""
        why = f": {g('reason')}" if g("reason") else ""
        state = str(g("state")).upper()
        return f"{g('unit')} {state} on {g('provider')} {g('gpu_model', '')}{price}{why}"
    if subject.startswith("fleet.alert."):
        where = "/".join(x for x in (g("pool"), g("unit")) if x)
        return f"{g('kind')} {where}: {g('message')}"
    if subject.startswith("fleet.audit."):
        cost = g("cost_impact_usd_per_hour") or 0
        impact = (
            f" ({'+' if cost > 0 else ''}{_usd(cost) if cost >= 0 else '-' + _usd(-cost)}/h)"
            if cost
            else ""
        )
        return f"{g('actor')} {g('action')}{impact}: {g('reasoning', '')} → {g('result', '')}"
    if subject.startswith("fleet.job."):
        where = " on ".join(x for x in (g("pool"), g("unit")) if x)
        extra = f" exit={g('exit_code')}" if g("exit_code") is not None else ""
        tries = f" attempt {g('attempt')}" if g("attempt") else ""
        return f"{g('job')} {str(g('state')).upper()} {where}{tries}{extra}: {g('reason', '')}"
    if subject.startswith("fleet.jobs.") or subject.startswith("fleet.jobheld."):
        return f"{g('id')} {g('priority')} est {g('est_s')} s for {g('pool') or 'routing'}"
    if subject.startswith("fleet.batch."):
        done = f"{g('items_done', 0)}/{g('items', 0)} items, {_usd(g('actual_usd') or 0)}"
        return f"{g('id')} {str(g('state')).upper()} {done}: {g('reason', '')}"
    if subject.startswith("fleet.dead."):
        return f"from {g('service')} ({g('size')} B): {g('reason')}"
    if subject.startswith("fleet.telemetry."):
        return (
            f"inflight={g('inflight', 0):.0f}/{g('capacity', 0):.0f} util={g('utilization', 0):.0%}"
            f" healthy={g('healthy')}"
        )
    skip = {"v", "ts"}
    return " ".join(
        f"{k}={v}" for k, v in d.items() if k not in skip and not isinstance(v, dict | list)
    )[:300]


def line(subject: str, data: bytes, received: float | None = None) -> Text:
    """`HH:MM:SS.mmm subject  summary`, coloured by the kind of subject."""
    import json

    stamp = received or time.time()
    try:
        doc = json.loads(data)
        body = summary(subject, doc) if isinstance(doc, dict) else str(doc)[:300]
        if isinstance(doc, dict) and isinstance(doc.get("ts"), int | float):
            stamp = float(doc["ts"])
    except (ValueError, TypeError, KeyError, AttributeError):
        body = f"<{len(data)} bytes, not JSON>"
    clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
    out = Text(f"{clock} ", style="dim")
    out.append(f"{subject:<34} ", style=style_for(subject) or "bold")
    out.append(body)
    return out
