"""What `fleet bench` is doing while it runs, on stderr.

A benchmark takes from seconds to minutes and prints its result only at the
end; without a word in between it looks hung. `fleet bench` opens one
`BenchProgress` for the run; the benchmark modules call `phase("...")` as they
go from one part to the next. On a terminal that is a live line with a spinner
and the elapsed time; elsewhere (CI logs, pipes) one plain line per phase. With
`--json` nothing is printed, so stdout and stderr stay machine-readable.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

_current: BenchProgress | None = None


def phase(text: str) -> None:
    """Say what the running benchmark does now; a no-op outside `fleet bench`."""
    if _current is not None:
        _current.phase(text)


class BenchProgress:
    """The progress display of one `fleet bench` run (a context manager)."""

    def __init__(self, quiet: bool, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)
        self.target = ""
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BenchProgress:
        global _current
        _current = self
        if not self.quiet and self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("fleet bench", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _current
        _current = None
        if self._progress is not None:
            self._progress.stop()

    def start(self, target: str) -> None:
        """A benchmark target begins."""
        self.target = target
        self.started = time.monotonic()
        self.phase("starting")

    def phase(self, text: str) -> None:
        if self.quiet:
            return
        line = f"fleet bench {self.target}: {text}"
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=line)
        else:
            elapsed = time.monotonic() - self.started
            self.console.print(f"{line} ({elapsed:.0f} s)", soft_wrap=True)
