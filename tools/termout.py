"""The console a verb prints its answer on."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

PIPE_WIDTH = 160
"""Columns when stdout is a pipe or a file: rich's 80 would cut ids and names that a
reader copies into the next command."""


def stdout_console(**options: Any) -> Console:
    """A console on stdout: the terminal's width, or `PIPE_WIDTH` and no colour when
    the output goes to a pipe or a file."""
    tty = sys.stdout.isatty()
    return Console(width=None if tty else PIPE_WIDTH, no_color=not tty, **options)
