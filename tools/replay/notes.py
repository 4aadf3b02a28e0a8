"""What a replay changed about the data, or suspects of it, said in one line each.

A replay scores only some seconds and sizes every policy within `--max`; when
either shapes the numbers, a reader who is not told compares policies on a
window they did not choose, or on a cap instead of a policy. These notes go to
stderr and into the JSON's `meta.notes`.
"""

from __future__ import annotations

import sys

from services.scaler.policy import Policy
from tools.replay.policies import default_for
from tools.replay.traces import Trace
from tools.replay.workload import Workload


def replay_notes(
    trace: Trace, work: Workload, skip_zero_runs_s: int, names: list[str], policy: Policy
) -> list[str]:
    """Every note of one replay: the trace's own (how it was read), then the window's."""
    found = [zero_runs_note(work, skip_zero_runs_s), max_note(work, names, policy)]
    return [*trace.notes, *(n for n in found if n is not None)]


def zero_runs_note(work: Workload, skip_zero_runs_s: int) -> str | None:
    """How many seconds `--skip-zero-runs` left unscored, if any."""
    skipped, total = work.skip.count(1), len(work.skip)
    if skipped == 0:
        return None
    runs = f"zero runs of >= {skip_zero_runs_s:,} s treated as missing telemetry"
    if skipped == total:
        return f"nothing left to score: all {total:,} s lie in {runs} (--skip-zero-runs 0: silence)"
    return f"{skipped:,} of {total:,} s in {runs} (--skip-zero-runs; 0: silence)"


def max_note(work: Workload, names: list[str], policy: Policy) -> str | None:
    """How often demand needs more units than `--max` at some policy's sizing: there every
    policy is short by the cap, whatever it decides."""
    peak = max(work.demand, default=0.0)
    worst: tuple[int, str, float] | None = None
    for name in names:
        p = default_for(name, policy)
        above = (p.max + 1e-9) * p.unit_capacity * p.target_utilization
        if peak <= above:
            continue
        n = sum(1 for d, s in zip(work.demand, work.skip, strict=True) if d > above and not s)
        if n and (worst is None or n > worst[0]):
            worst = (n, name, p.target_utilization)
    if worst is None:
        return None
    n, name, target = worst
    scored = len(work.skip) - work.skip.count(1)
    return (
        f"demand needs more than --max {policy.max:,} units ({name} at {target:g} target "
        f"utilization) in {n:,} of {scored:,} scored s: shortfall there is the cap's, "
        "not a policy's; raise --max"
    )


def print_notes(notes: list[str]) -> None:
    """Each note on its own stderr line, where a table piped on stdout leaves them visible."""
    for note in notes:
        print(f"fleet replay: note: {note}", file=sys.stderr)
