"""How a load run is shown: a live progress bar, then the results table."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tools.loadgen.engine import LoadRun
from tools.loadgen.stats import Summary


class LiveProgress:
    """A rich progress bar over the arrival window, with live counts."""

    def __init__(self, console: Console, duration_s: float) -> None:
        self.progress = Progress(
            TextColumn("[bold]loadgen[/]"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("load", total=duration_s, info="")
        self.duration_s = duration_s

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def update(self, run: LoadRun) -> None:
        """Redraw from the run's counts."""
        t = run.tally
        elapsed = time.monotonic() - run.started
        rate = t.ok / elapsed if elapsed > 0 else 0.0
        ok = f"{100 * t.ok / t.done:.1f}%" if t.done else "-"
        info = f"sent {t.sent}  done {t.done}  in flight {t.inflight}  ok {ok}  {rate:,.0f} ok/s"
        self.progress.update(self.task, completed=min(elapsed, self.duration_s), info=info)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def table(s: Summary) -> Table:
    """The results table."""
    t = Table(title=f"fleet loadgen: agents.{s.agent}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    mode = "stream" if s.stream else "send"
    rows = [
        ("concurrent users (sessions)", f"{s.users:,} in {s.tenants:,} tenants"),
        ("offered load", f"{s.target_rate:,.0f} req/s for {s.duration_s:.0f} s ({mode})"),
        ("requests sent / finished", f"{s.sent:,} / {s.completed:,}"),
        ("requests/s (successful)", f"{s.requests_per_s:,.1f}"),
        ("peak requests in flight", f"{s.peak_inflight:,}"),
        ("latency p50", _ms(s.p50_s)),
        ("latency p95", _ms(s.p95_s)),
        ("latency p99", _ms(s.p99_s)),
        ("latency max", _ms(s.max_s)),
    ]
    if s.stream:
        rows.append(("first event p50", _ms(s.first_event_p50_s)))
    rows.append(("success rate", f"{100 * s.success_rate:.2f} %"))
    errors = ", ".join(f"{k} {v:,}" for k, v in s.errors.items()) or "none"
    rows.append(("errors by kind", errors))
    for k, v in rows:
        t.add_row(k, v)
    return t
