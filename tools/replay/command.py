"""What `fleet replay` does once its arguments are checked: run, print, write."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.scaler.policy import Policy
from tools.replay.fixed import fixed_reading
from tools.replay.frontier import Point, headlines
from tools.replay.least import least_for
from tools.replay.notes import print_notes, replay_notes
from tools.replay.policies import BASELINES
from tools.replay.report import print_frontiers, print_headline, print_table, write_json
from tools.replay.sweep import Outcome, Result, jobs_default, plan, run_jobs
from tools.replay.traces import Trace
from tools.replay.workload import Workload, prepare, sized_max


@dataclass
class Options:
    """One replay's settings, as the CLI gathered them."""

    names: list[str]
    policy: Policy
    service_s: float = 1.0
    price: float = 1.0
    start_s: int = 0
    duration_s: int | None = None
    skip_zero_runs_s: int = 600
    sweep: bool = False
    jobs: int | None = None
    json: str | None = None
    """Path to write the JSON to; '-' for stdout (and no table, no progress)."""
    plot: Path | None = None
    """PNG to draw the frontiers and the worst-served 10 minutes into."""
    source: str = ""
    """Where the workload came from (a path, or the stream), for the JSON."""
    notes: list[str] = field(default_factory=list)
    """What the config, the reading or the window changed about the data, printed on
    stderr before the run (`tools.replay.notes`)."""
    max_given: bool = True
    """False when neither --max nor --config chose the most units: the replay then
    sizes it to the trace (`workload.sized_max`)."""


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Progress | None]:
    if quiet:
        yield None
        return
    bar = Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        yield bar


def run_workload(work: Workload, opts: Options) -> Outcome:
    """Every run the options ask for, in worker processes, with progress on stderr."""
    record = opts.json is not None or opts.plot is not None
    jobs = plan(opts.names, opts.policy, sweep=opts.sweep, record=record)
    workers = min(len(jobs), opts.jobs or jobs_default())
    with _progress(len(jobs), quiet=opts.json == "-") as bar:
        task = bar.add_task("", total=len(jobs)) if bar is not None else None

        def done(r: Result) -> None:
            if bar is not None and task is not None:
                knob = "default" if r.job.knob is None else f"{r.job.knob:g}"
                bar.update(task, advance=1, description=f"{r.job.name} {knob}")

        return run_jobs(work, jobs, price=opts.price, workers=workers, on_done=done)


def execute(trace: Trace, opts: Options) -> int:
    """Replay the trace as the options say; print tables, write the JSON."""
    work = prepare(
        trace,
        service_s=opts.service_s,
        start_s=opts.start_s,
        duration_s=opts.duration_s,
        skip_zero_runs_s=opts.skip_zero_runs_s,
    )
    if not opts.max_given:
        opts.policy, sized = sized_max(work, opts.policy)
        opts.notes = [*opts.notes, *([sized] if sized else [])]
    notes = replay_notes(trace, work, opts.skip_zero_runs_s, opts.names, opts.policy)
    opts.notes = [*opts.notes, *notes]
    print_notes(opts.notes)
    out = run_workload(work, opts)
    report(trace.name, trace.shape, out, opts, work)
    return 0


def report(name: str, shape: str, out: Outcome, opts: Options, work: Workload) -> None:
    """Print the tables (unless the JSON goes to stdout) and write the JSON."""
    totals = [out.defaults[n].totals for n in opts.names]
    series = {n: s for n in opts.names if (s := out.defaults[n].series) is not None}
    heads = None
    if opts.sweep and "ours" in out.points:
        defaults = {n: _point(out.defaults[n]) for n in opts.names if n in BASELINES}
        cap = opts.policy.unit_capacity
        heads = headlines(
            out.points["ours"],
            defaults,
            lambda uh: fixed_reading(work, cap, uh),
            least_for(work, opts.policy),
        )
    if opts.json != "-":
        scored = totals[0].seconds if totals else 0
        p = opts.policy
        title = (
            f"{name}: {scored:,} s scored, unit capacity {p.unit_capacity:g}, "
            f"lead time {p.lead_time_s:g} s"
        )
        print_table(totals, title)
        if opts.sweep:
            print_frontiers(out.points)
        if heads:
            print_headline(heads)
    if opts.json is not None:  # before the plot: a picture that fails loses no numbers
        meta = _meta(shape, opts)
        dest = sys.stdout if opts.json == "-" else Path(opts.json)
        write_json(dest, opts.source or name, totals, series, meta, out.points or None, heads)
    if opts.plot is not None:
        from tools.replay.plot import draw

        chosen = {n: out.defaults[n].totals for n in opts.names}
        draw(opts.plot, name, out.points, chosen, series, opts.policy.unit_capacity)


def _point(r: Result) -> Point:
    t = r.totals
    knob = r.job.knob if r.job.knob is not None else r.job.policy.target_utilization
    return Point(knob=knob, unit_hours=t.unit_hours, under_unit_s=t.under_unit_s, actions=t.actions)


def _meta(shape: str, opts: Options) -> dict[str, Any]:
    return {
        "shape": shape,
        "unit_capacity": opts.policy.unit_capacity,
        "lead_time_s": opts.policy.lead_time_s,
        "price_usd_per_hour": opts.price,
        "service_s": opts.service_s,
        "start_s": opts.start_s,
        "duration_s": opts.duration_s,
        "skip_zero_runs_s": opts.skip_zero_runs_s,
        "sweep": opts.sweep,
        "policy": msgspec.to_builtins(opts.policy),
        "notes": opts.notes,
    }
