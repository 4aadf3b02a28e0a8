"""Secrets never leave the process: a filter fed by the secret values it loaded.

An outside service can hand a secret back to us: a model endpoint (or a proxy in
front of it) that echoes the request's headers in an error puts the API key into
the exception text, and from there into a task's status, an event, a reply, the
database and the terminal. Scrubbing each place that formats an error would miss
the next one, so the filter sits where bytes leave the process instead: every
NATS publish (events, replies, KV writes: see `services.kit.bus`), every row the
kit's SQLite store writes, and every log line.

The values come from the environment (variables whose names end in a secret's
name: `..._KEY`, `..._TOKEN`, `..._SECRET`, `..._PASSWORD`, `..._SEED`, `..._CREDS`;
not `..._PUBLIC_KEY`, whose value is meant to be shown), from the files that
`..._FILE` variables of such names point to, and from `add_secret` for values a
service reads some other way. An nkey public key is never one, whatever its
variable is called (`[signing] costguard_key`): signed messages carry it.
Values shorter than `MIN_LEN` are ignored: replacing every "abc" in a message
would corrupt it and hide nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

MASK = "***"
MIN_LEN = 6
"""Shorter values are not treated as secrets (they would match ordinary text)."""
MAX_FILE_BYTES = 64 * 1024
"""A secret file larger than this is not a secret value but something else; skipped."""

_SECRET_NAME = re.compile(
    r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|SEED|SEEDS|CREDS|CREDENTIALS)(_FILE)?$", re.IGNORECASE
)
_NOT_SECRET = re.compile(r"PUBLIC|PUBKEY", re.IGNORECASE)
_NKEY_PUBLIC = re.compile(r"[UNAOCPVX][A-Z2-7]{55}")
"""An nkey's public key (user, server, account, operator, cluster...): meant to be shown,
and carried in every signed message's headers (`[signing] costguard_key`...). A seed
starts with `S` and stays a secret."""
_secrets: list[str] = []
_secret_bytes: list[bytes] = []


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Secret values named by `env` (default: the process's), longest first.

    Each variable whose name says it is a secret counts with its value; one ending in
    `_FILE` counts with the content of the file it names (and each of its lines, for
    files such as NATS `.creds` that hold more than one secret).
    """
    env = os.environ if env is None else env
    found: set[str] = set()
    for name, value in env.items():
        if not _SECRET_NAME.search(name) or _NOT_SECRET.search(name):
            continue
        if name.upper().endswith("_FILE"):
            found.update(_file_values(value))
        else:
            found.add(value.strip())
    return _longest_first(found)


def _file_values(path: str) -> set[str]:
    try:
        file = Path(path)
        if not file.is_file() or file.stat().st_size > MAX_FILE_BYTES:
            return set()
        text = file.read_text(errors="replace")
    except OSError:
        return set()
    # The whole text, and each line that is one token (a NATS .creds file holds a JWT
    # and a seed on lines of their own, between banner lines that are not secret).
    lines = {line.strip() for line in text.splitlines()}
    return {text.strip(), *(line for line in lines if line and not any(c.isspace() for c in line))}


def _longest_first(values: Iterable[str]) -> list[str]:
    # Longest first: a secret that contains another is masked whole, not in pieces.
    kept = (v for v in set(values) if len(v) >= MIN_LEN and not _NKEY_PUBLIC.fullmatch(v))
    return sorted(kept, key=len, reverse=True)


def load_secrets(env: Mapping[str, str] | None = None) -> None:
    """Add the secrets named by `env` (default: the process's) to the filter."""
    for value in secret_values(env):
        add_secret(value)


def add_secret(value: str) -> None:
    """Mask `value` from now on, wherever the filter runs. Idempotent."""
    value = value.strip()
    if len(value) < MIN_LEN or value in _secrets or _NKEY_PUBLIC.fullmatch(value):
        return
    _secrets[:] = _longest_first([*_secrets, value])
    _secret_bytes[:] = [s.encode() for s in _secrets]


def known_secrets() -> int:
    """How many values the filter masks (never the values themselves)."""
    return len(_secrets)


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every secret replaced by `***` (the loaded ones unless given)."""
    for value in _secrets if secrets is None else secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """`data` with every loaded secret replaced by `***`; the same object when clean."""
    for value in _secret_bytes:
        if value in data:
            data = data.replace(value, MASK.encode())
    return data


def scrub_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Header values with the loaded secrets masked; the same dict when clean."""
    if not headers or not _secrets:
        return headers
    clean = {k: scrub(v) for k, v in headers.items()}
    return headers if clean == headers else clean
