"""The sweep on every trace of a set, one table; and leave-one-out choices.

`fleet replay --eval PATH...` takes trace files and directories (every trace
file in a directory; an `eval.json` there, written by fetch_traces, says how
to read each). Per trace it runs the sweep and reads ours' frontier at the
better baseline's default unit-hours (tools/replay/frontier.py).

Leave-one-out (`--set KEY=V1,V2,...`): ours runs once per candidate value of
one Policy field. For each trace, the value is chosen on the other traces
only, and reported on the held-out one: settings chosen without a trace,
judged on it. The choice: the value that meets the acceptance rule on the
most other traces; ties go to the lower mean under-provisioning ratio, each
ratio capped at `RATIO_CAP` so one hopeless trace cannot decide alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.scaler.policy import Policy
from tools.replay.fetch_traces import MANIFEST
from tools.replay.fixed import fixed_reading
from tools.replay.frontier import UNDER_RATIO_GOAL, Headline, Point, better_baseline, headlines
from tools.replay.least import least_for
from tools.replay.notes import replay_notes
from tools.replay.policies import BASELINES
from tools.replay.report import LEAST_NOTE, print_whole
from tools.replay.sweep import Job, Outcome, Result, plan, run_jobs
from tools.replay.traces import TraceError, read_trace
from tools.replay.workload import prepare, sized_max
from tools.termout import stdout_console

RATIO_CAP = 10.0
"""Largest under-provisioning ratio a trace adds to a leave-one-out mean."""
_SUFFIXES = (".csv", ".txt", ".jsonl", ".gz", ".bz2", ".tbz2", ".tbz", ".tar", ".tgz")


@dataclass(frozen=True)
class EvalTrace:
    """A trace of the set and how to read it."""

    path: Path
    options: dict[str, Any]
    """Keyword arguments for read_trace (time_column, duration_column, end_column,
    token_columns, period_s)."""
    skip_zero_runs_s: int = 600
    """Zero runs this long are missing telemetry; 0 where the trace's zeros are real."""


def collect(paths: Sequence[Path]) -> list[EvalTrace]:
    """The traces named, directories expanded (sorted), each with its manifest options."""
    out: list[EvalTrace] = []
    for p in paths:
        if p.is_dir():
            manifest = p / MANIFEST
            opts = json.loads(manifest.read_text()) if manifest.is_file() else {}
            for f in sorted(p.iterdir()):
                if f.is_file() and f.name != MANIFEST and f.name.lower().endswith(_SUFFIXES):
                    out.append(_entry(f, opts.get(f.name, {})))
        elif p.is_file():
            manifest = p.parent / MANIFEST
            opts = json.loads(manifest.read_text()) if manifest.is_file() else {}
            out.append(_entry(p, opts.get(p.name, {})))
        else:
            raise TraceError(f"{p}: no such file or directory")
    return out


def _entry(path: Path, entry: dict[str, Any]) -> EvalTrace:
    keys = ("time_column", "duration_column", "end_column", "token_columns", "period_s")
    return EvalTrace(
        path,
        {k: entry[k] for k in keys if k in entry},
        int(entry.get("skip_zero_runs_s", 600)),
    )


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`KEY=V1,V2,...` -> (Policy field, values of its type); ValueError if bad."""
    key, sep, values = text.partition("=")
    key = key.strip()
    fields = {f.name: f.type for f in msgspec.structs.fields(Policy)}
    if not sep or key not in fields:
        raise ValueError(
            f"--set wants KEY=V1,V2,... with KEY a policy field ({', '.join(sorted(fields))}), "
            f"not {text!r}"
        )
    out = []
    for v in values.split(","):
        try:
            out.append(msgspec.convert(json.loads(v), type=fields[key]))
        except (ValueError, msgspec.ValidationError) as exc:
            raise ValueError(f"--set {key}: {v!r} is not a valid value ({exc})") from None
    if not out:
        raise ValueError(f"--set {key}: no values")
    return key, out


@dataclass
class TraceResult:
    """One trace: the baselines' defaults and ours' headline per candidate value."""

    trace: EvalTrace
    seconds: int
    defaults: dict[str, Point]
    heads: dict[str, Headline]
    """Ours against the better baseline, keyed by the candidate value's text
    ('' without --set)."""
    notes: list[str]
    """What the replay changed about the data or suspects of it (tools.replay.notes)."""


def run_trace(
    et: EvalTrace,
    policy: Policy,
    variants: dict[str, Policy],
    *,
    service_s: float,
    price: float,
    workers: int,
    on_done: Callable[[Result], None] | None = None,
    start_s: int = 0,
    duration_s: int | None = None,
    max_given: bool = True,
) -> TraceResult:
    """The sweep of ours (once per variant) and the baselines' defaults on one
    trace, or on its window from `start_s`, `duration_s` long (None: to the end)."""
    trace = read_trace(et.path, **et.options)
    work = prepare(
        trace,
        service_s=service_s,
        start_s=start_s,
        duration_s=duration_s,
        skip_zero_runs_s=et.skip_zero_runs_s,
    )
    sized: str | None = None
    if not max_given:
        base = policy.max
        policy, sized = sized_max(work, policy)
        # A variant of --set max=... keeps its own.
        variants = {
            k: msgspec.structs.replace(v, max=policy.max) if v.max == base else v
            for k, v in variants.items()
        }
    notes = replay_notes(trace, work, et.skip_zero_runs_s, ["ours", *BASELINES], policy)
    notes = [*([sized] if sized else []), *notes]
    jobs = plan(list(BASELINES), policy, sweep=False, record=False)
    for label, pol in variants.items():
        jobs += [
            Job("ours", j.knob, j.policy, label=f"ours{label}")
            for j in plan(["ours"], pol, sweep=True, record=False)
            if j.knob is not None
        ]
    out: Outcome = run_jobs(work, jobs, price=price, workers=workers, on_done=on_done)
    defaults = {
        n: Point(
            knob=r.job.policy.target_utilization,
            unit_hours=r.totals.unit_hours,
            under_unit_s=r.totals.under_unit_s,
            actions=r.totals.actions,
        )
        for n, r in out.defaults.items()
    }
    better = better_baseline(defaults)
    assert better is not None
    least = functools.cache(least_for(work, policy))  # the same for every variant
    heads = {
        label: headlines(
            out.points[f"ours{label}"],
            {better: defaults[better]},
            lambda uh: fixed_reading(work, policy.unit_capacity, uh),
            least,
        )[0]
        for label in variants
    }
    seconds = next(iter(out.defaults.values())).totals.seconds
    return TraceResult(
        trace=et,
        seconds=seconds,
        defaults=defaults,
        heads=heads,
        notes=notes,
    )


def _capped(h: Headline) -> float:
    r = h.under_ratio
    return RATIO_CAP if r is None else min(RATIO_CAP, r)


def choose(per_trace: dict[str, dict[str, Headline]], held_out: str, labels: list[str]) -> str:
    """The candidate that does best on every trace but `held_out` (see the module doc)."""
    others = [t for t in per_trace if t != held_out]

    def key(label: str) -> tuple[int, float, int]:
        heads = [per_trace[t][label] for t in others]
        missed = sum(not h.met for h in heads)
        mean = sum(_capped(h) for h in heads) / len(heads) if heads else 0.0
        return missed, mean, labels.index(label)

    return min(labels, key=key)


def evaluate(
    paths: Sequence[Path],
    policy: Policy,
    *,
    set_arg: str | None,
    service_s: float,
    price: float,
    workers: int,
    console: Console | None = None,
    start_s: int = 0,
    duration_s: int | None = None,
    max_given: bool = True,
) -> int:
    """Run the set, print the table (and the leave-one-out table); exit code 0.

    `start_s`/`duration_s` cut every trace to one window (a quick look at a
    long set); the table's title then says so, since a window is not the trace."""
    console = console or stdout_console()
    traces = collect(paths)
    if not traces:
        raise TraceError("no traces found in " + ", ".join(str(p) for p in paths))
    variants: dict[str, Policy] = {"": policy}
    key = None
    if set_arg is not None:
        key, values = parse_set(set_arg)
        variants = {json.dumps(v): msgspec.structs.replace(policy, **{key: v}) for v in values}
    results: list[TraceResult] = []
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("eval", total=len(traces))
        for et in traces:
            bar.update(task, description=et.path.name)
            r = run_trace(
                et,
                policy,
                variants,
                service_s=service_s,
                price=price,
                workers=workers,
                start_s=start_s,
                duration_s=duration_s,
                max_given=max_given,
            )
            results.append(r)
            for note in r.notes:  # as a single replay says them: on stderr
                bar.console.print(
                    f"fleet replay: note: {et.path.name}: {note}", markup=False, soft_wrap=True
                )
            if key is None:  # a long set shows each verdict as it comes
                h = r.heads[""]
                bar.console.print(
                    f"{et.path.name}: vs {h.baseline} under {_fmt(h.under_ratio)}, "
                    f"actions {_fmt(h.actions_ratio)}, {h.verdict}",
                    soft_wrap=True,
                )
            bar.advance(task)
    labels = list(variants)
    if start_s or duration_s is not None:
        end = "the end" if duration_s is None else f"{start_s + duration_s:,} s"
        console.print(f"window: {start_s:,} s to {end} of each trace, not the whole trace")
    if key is None:
        _print_set(results, console)
    else:
        _print_loo(results, key, labels, console)
    return 0


def _fmt(r: float | None) -> str:
    if r is None:
        return "out of range"
    return "inf" if r == float("inf") else f"{r:.2f}x"


def _print_set(results: list[TraceResult], console: Console) -> None:
    table = Table(
        title=(
            f"ours at the better baseline's default unit-hours (goal: under <= "
            f"{UNDER_RATIO_GOAL:g}x, actions <=)"
        )
    )
    cols = ("trace", "seconds", "better baseline", "under ratio", "actions ratio", "verdict")
    for col in (*cols, "least possible", "fixed count in hindsight"):
        table.add_column(col, justify="left" if col in ("trace", "better baseline") else "right")
    met = 0
    for r in results:
        h = r.heads[""]
        met += h.met
        table.add_row(
            r.trace.path.name,
            f"{r.seconds:,}",
            h.baseline,
            _fmt(h.under_ratio),
            _fmt(h.actions_ratio),
            h.verdict,
            _fmt(h.least_ratio),
            _fmt(h.fixed_ratio),
        )
    print_whole(console, table)
    reach = sum(not r.heads[""].out_of_reach for r in results)
    console.print(f"met on {met} of {len(results)} traces ({reach} within reach of any policy)")
    console.print(LEAST_NOTE)
    console.print(
        "fixed count in hindsight: the under unit-s of a fleet of one fixed size costing the "
        "baseline's unit-hours, chosen knowing the whole trace, over the baseline's (a "
        "yardstick: a policy above it did worse than not scaling; no verdict uses it)"
    )


def _print_loo(results: list[TraceResult], key: str, labels: list[str], console: Console) -> None:
    per_trace = {r.trace.path.name: r.heads for r in results}
    table = Table(title=f"leave-one-out: {key} chosen on the other traces, judged on this one")
    cols = ("trace", "better baseline", f"chosen {key}", "under ratio", "actions ratio", "verdict")
    for col in cols:
        table.add_column(col, justify="left" if col in ("trace", "better baseline") else "right")
    met = 0
    for r in results:
        name = r.trace.path.name
        label = choose(per_trace, name, labels)
        h = r.heads[label]
        met += h.met
        table.add_row(
            name,
            h.baseline,
            label,
            _fmt(h.under_ratio),
            _fmt(h.actions_ratio),
            h.verdict,
        )
    print_whole(console, table)
    console.print(f"met on {met} of {len(results)} held-out traces")
