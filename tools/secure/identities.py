"""NATS identities of a secured deployment: one nkey per service, operator, tenant, admin.

Each identity is an Ed25519 key pair in NATS's nkey encoding. The seed (`SU...`)
is written to `<dir>/<name>.nk` with mode 0600 and is the identity: whoever
reads it connects as that identity. The server's configuration holds only the
public keys (`U...`), so it can be shown, diffed and reviewed without leaking
anything. Existing seeds are kept, so a restart of `fleet up --secure` keeps
every identity; deleting a file and running again rotates that key.
(docs/adr/0013-least-privilege.md: why plain nkeys, not JWT `.creds`.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nkeys

from contracts import subjects
from tools.registry import ORDER

SEED_SUFFIX = ".nk"
OPERATOR = "operator"
ADMIN = "admin"
WORKER = "worker"
"""What the `local` provider's GPU job workers connect as: a unit's work and no more."""
SERVICES: tuple[str, ...] = ORDER
"""Every service gets its own identity; `runner` is also what the `local` provider's
hosted-agent runners connect as."""
_RESERVED = {*SERVICES, WORKER, OPERATOR, ADMIN}
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Identity:
    """One identity: its name, its public key, and where its seed is."""

    name: str
    public_key: str
    seed_file: Path

    @property
    def inbox_prefix(self) -> str:
        """Where this identity's replies go; the server lets only it subscribe there."""
        return inbox_prefix(self.name)


def inbox_prefix(name: str) -> str:
    """`_INBOX.<name>`: the reply inboxes of identity `name`."""
    return f"_INBOX.{name}"


def check_tenant(name: str) -> str:
    """A tenant name that can be a subject token and is no service's; ValueError if not."""
    if not _TENANT.match(name):
        raise ValueError(
            f"tenant {name!r} cannot be a NATS identity: use 1-64 of A-Z a-z 0-9 _ - "
            "(it is the last token of a2a.<agent>.rpc.<tenant>)"
        )
    if name in _RESERVED:
        raise ValueError(f"tenant {name!r} is the name of an identity of the fleet; pick another")
    subjects.token(name, "tenant")
    return name


def ensure_identity(creds_dir: Path, name: str) -> Identity:
    """The identity `name`, its seed read from `creds_dir`, or generated there (0600)."""
    creds_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(creds_dir, 0o700)
    path = creds_dir / f"{name}{SEED_SUFFIX}"
    if path.is_file():
        seed = bytearray(path.read_bytes().strip())
    else:
        seed = bytearray(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(bytes(seed) + b"\n")
    os.chmod(path, 0o600)
    try:
        pair = nkeys.from_seed(seed)
    except Exception as exc:  # nkeys raises its own errors for a damaged seed
        raise ValueError(f"{path} does not hold an nkey user seed ({exc}); delete it") from None
    public = pair.public_key.decode()
    pair.wipe()
    return Identity(name, public, path)


def ensure_identities(creds_dir: Path, tenants: list[str]) -> dict[str, Identity]:
    """Every identity of the deployment: services, workers, operator, admin and `tenants`."""
    names = [*SERVICES, WORKER, OPERATOR, ADMIN, *(check_tenant(t) for t in tenants)]
    return {name: ensure_identity(creds_dir, name) for name in names}
