"""Opening a trace file as a stream of text lines, whatever wraps it.

Compression is recognised by its magic bytes, not the file name: gzip
(`1f 8b`), bzip2 (`BZh`), then a tar archive inside (or bare) is recognised
by its `ustar` header. A tar must hold one file (directories are skipped); a
second file is an error once the first is read, as a stream cannot look
ahead. A UTF-8 byte-order mark (Excel's CSVs) is dropped. Nothing is
extracted to disk and nothing is read whole: lines are decoded as they are
consumed, so memory stays bounded.
"""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, the line and the problem."""


def _peek(raw: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    """The first `n` bytes of a stream, and a stream that still yields them."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(_Forward(raw))
    return buffered.peek(n)[:n], buffered


@contextmanager
def open_lines(path: Path) -> Iterator[tuple[str, Iterator[str]]]:
    """(display name, lines) of the trace at `path`; TraceError if it cannot be opened."""
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    with ExitStack() as stack:
        try:
            raw: IO[bytes] = stack.enter_context(path.open("rb"))
            head, raw = _peek(raw, 3)
            if head[:2] == b"\x1f\x8b":
                raw = stack.enter_context(gzip.open(raw, "rb"))  # type: ignore[arg-type]
            elif head == b"BZh":
                raw = stack.enter_context(bz2.open(raw, "rb"))
            head, raw = _peek(raw, 512)
            name = path.name
            rest: Iterator[tarfile.TarInfo] | None = None
            if len(head) >= 262 and head[257:262] == b"ustar":
                tar = stack.enter_context(tarfile.open(fileobj=raw, mode="r|"))
                rest = (m for m in tar if m.isfile())
                member = next(rest, None)
                inner = tar.extractfile(member) if member is not None else None
                if member is None or inner is None:
                    raise TraceError(f"{path}: the archive holds no file")
                raw, name = inner, f"{path.name}:{member.name}"
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise TraceError(f"{path}: cannot read ({exc})") from exc
        text = io.TextIOWrapper(
            io.BufferedReader(_Forward(raw)), encoding="utf-8-sig", errors="replace", newline=None
        )
        yield name, _guard(path, text, rest, name)


def _only_file(path: Path, rest: Iterator[tarfile.TarInfo], first: str) -> None:
    """Refuse a tar with a file after the one read: which one was meant is not known."""
    others = [m.name for m in rest]
    if others:
        names = ", ".join([first.partition(":")[2], *others[:4]])
        raise TraceError(
            f"{path}: the archive holds {len(others) + 1} files ({names}); "
            "a trace is a tar of one file"
        )


class _Forward(io.RawIOBase):
    """A read-only, forward-only view of a stream (tar members in stream mode
    cannot say whether they seek, which text decoding asks)."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._src.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _guard(
    path: Path, text: IO[str], rest: Iterator[tarfile.TarInfo] | None, name: str
) -> Iterator[str]:
    """The lines, with a corrupt archive met half-way turned into a TraceError, and a
    tar's further files refused once its first is read."""
    try:
        yield from text
        if rest is not None:
            _only_file(path, rest, name)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise TraceError(f"{path}: cannot read ({exc})") from exc
