"""How a unit carries out one job: simulated GPU time, or a real subprocess.

An executor is `async (job, report) -> Outcome`; `report(fraction)` lets it say
how far along it is. Cancellation arrives as `asyncio.CancelledError`: the
simulated job stops at once, the subprocess's process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from contracts.jobs import Job

Report = Callable[[float], None]
Executor = Callable[[Job, Report], Coroutine[Any, Any, "Outcome"]]
OUTPUT_TAIL = 4000
"""Characters of a job's output kept in its event: the end, where errors are."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to; `reason` is a sentence for the job's events."""

    ok: bool
    reason: str
    exit_code: int | None = None
    output: str = ""


def simulated(speed: float, *, step_s: float = 0.5) -> Executor:
    """Run a job for its estimated seconds divided by the GPU's `speed` (H100 = 1.0).

    A job whose `data` has `"fail": true` fails every time: a poison job for demos
    and tests, failing the way a real handler would, by its outcome.
    """

    async def run(job: Job, report: Report) -> Outcome:
        if job.data.get("fail"):
            return Outcome(False, f"job handler failed: {job.data.get('error', 'poison job')}")
        total = job.est_s / max(speed, 1e-6)
        started = time.monotonic()
        while (left := total - (time.monotonic() - started)) > 0:
            await asyncio.sleep(min(step_s, left))
            report(min((time.monotonic() - started) / total, 1.0))
        return Outcome(True, f"simulated {total:.2f} s of GPU time (speed {speed:g})")

    return run


def subprocess_runner(*, env: dict[str, str] | None = None) -> Executor:
    """Run the job's `command` as a real process; output and exit code go in the events.

    A job without a command is simulated at speed 1, so local pools take any job.
    """
    fallback = simulated(1.0)

    async def run(job: Job, report: Report) -> Outcome:
        if not job.command:
            return await fallback(job, report)
        extra = {"FLEET_JOB_ID": job.id, **(env or {})}
        try:
            proc = await asyncio.create_subprocess_exec(
                *job.command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **extra},
                start_new_session=True,
            )
        except OSError as exc:
            return Outcome(False, f"cannot start {job.command[0]!r}: {exc}", exit_code=127)
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await proc.wait()
            raise
        text = out.decode("utf-8", "replace")[-OUTPUT_TAIL:]
        code = proc.returncode if proc.returncode is not None else -1
        if code == 0:
            return Outcome(True, "command exited 0", exit_code=0, output=text)
        return Outcome(False, f"command exited {code}", exit_code=code, output=text)

    return run


__all__ = ["Executor", "Outcome", "Report", "simulated", "subprocess_runner"]
