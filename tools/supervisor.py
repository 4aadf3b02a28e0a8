"""`fleet up`'s supervisor: services as child processes, restarted on crash.

A child that exits with a configuration error (exit code 2) is not restarted:
it would fail the same way forever. The supervisor stops every child instead
and keeps the error (`fatal`) for `fleet up` to report and exit with.

Each child runs `python -m tools run <service>` in its own session (so a
terminal's Ctrl-C reaches only the supervisor, which then stops children in
order) with PR_SET_PDEATHSIG on Linux, so a killed supervisor leaves no child
behind. Child log lines are printed with the service's name in front.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text

from tools.configcheck import CONFIG_ERROR_EXIT

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "white")
STABLE_AFTER_S = 30.0
"""A child that ran this long resets its restart backoff."""
MAX_BACKOFF_S = 30.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    colour: str
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    reader: asyncio.Task[None] | None = None
    exits: list[int] = field(default_factory=list)
    last_line: str = ""
    """The child's latest output line: a configuration error's message."""


class Supervisor:
    """Starts, watches and stops a set of child processes."""

    def __init__(self, console: Console, stop: asyncio.Event) -> None:
        self.console = console
        self.stop_event = stop
        self.children: list[Child] = []
        self._watchers: list[asyncio.Task[None]] = []
        self.fatal: tuple[str, str] | None = None
        """(service, its last line) of a child that exited with a configuration error."""

    def add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        colour = COLOURS[len(self.children) % len(COLOURS)]
        self.children.append(Child(name, argv, env, colour))

    def line(self, name: str, colour: str, text: str) -> None:
        prefix = Text(f"{name:>11} │ ", style=colour)
        self.console.print(prefix + render_log(text), soft_wrap=True, highlight=False)

    async def _spawn(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.started = time.monotonic()
        child.reader = asyncio.create_task(self._pump(child, child.proc))

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                child.last_line = text
            self.line(child.name, child.colour, text)

    async def _watch(self, child: Child) -> None:
        while not self.stop_event.is_set():
            await self._spawn(child)
            assert child.proc is not None
            code = await child.proc.wait()
            if child.reader is not None:
                await child.reader
            if self.stop_event.is_set():
                return
            child.exits.append(code)
            if code == CONFIG_ERROR_EXIT:
                self.fatal = (child.name, child.last_line)
                self.line(child.name, "bold red", "configuration error; stopping every service")
                self.stop_event.set()
                return
            if time.monotonic() - child.started > STABLE_AFTER_S:
                child.backoff_s = 1.0
            child.restarts += 1
            self.line(
                child.name,
                "bold red",
                f"exited with code {code}; restart #{child.restarts} in {child.backoff_s:.0f} s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), child.backoff_s)
            child.backoff_s = min(MAX_BACKOFF_S, child.backoff_s * 2)

    def start(self) -> None:
        self._watchers = [asyncio.create_task(self._watch(c)) for c in self.children]

    async def shutdown(self, grace_s: float = 15.0) -> None:
        """SIGTERM every child (in reverse start order), SIGKILL what is left after grace_s."""
        self.stop_event.set()
        for child in reversed(self.children):
            _signal_group(child, signal.SIGTERM)
        procs = [c.proc for c in self.children if c.proc is not None]
        waits = [p.wait() for p in procs if p.returncode is None]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), grace_s)
            except TimeoutError:
                for child in self.children:
                    _signal_group(child, signal.SIGKILL)
                await asyncio.gather(*(p.wait() for p in procs), return_exceptions=True)
        for child in self.children:  # anything the services started in their own groups
            _signal_group(child, signal.SIGKILL)
        await asyncio.gather(*self._watchers, return_exceptions=True)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


_LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
_SKIP = {"ts", "level", "service", "logger", "msg"}


def render_log(text: str) -> Text:
    """A JSON log line as `HH:MM:SS level msg k=v ...`; other lines as they are."""
    if not text.startswith("{"):
        return Text(text)
    try:
        doc = json.loads(text)
    except ValueError:
        return Text(text)
    stamp = time.strftime("%H:%M:%S", time.localtime(float(doc.get("ts", time.time()))))
    level = str(doc.get("level", "info"))
    out = Text(f"{stamp} ", style="dim")
    out.append(f"{level:7} ", style=_LEVEL_STYLE.get(level, ""))
    out.append(str(doc.get("msg", "")))
    extras = " ".join(f"{k}={v}" for k, v in doc.items() if k not in _SKIP and k != "exc")
    if extras:
        out.append(" " + extras, style="dim")
    if "exc" in doc:
        out.append("\n" + str(doc["exc"]), style="red")
    return out
