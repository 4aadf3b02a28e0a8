"""Ed25519 signatures (NATS nkeys) on the messages that move money.

A `Signer` holds one service's seed and gives the headers that sign a payload
on a subject (contracts.signatures says which headers and which bytes). `verify`
checks those headers against the public keys a reader trusts and says who
signed, or raises `SignatureError` with the reason, which is what a dead letter
and an alert then say. Keys are nkeys so that the tools NATS operators already
use (`nk`, `nsc`) read and make them, and `nkeys` (the library nats-py signs
its own connections with) is the only crypto we depend on.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

from contracts.signatures import (
    FENCE_HEADER,
    NO_FENCE,
    SIG_HEADER,
    SIGNER_HEADER,
    looks_like_public_key,
    signed_bytes,
)
from services.kit.config import SigningSettings, table_settings
from services.kit.errors import ConfigError
from services.kit.messages import Delivery

MAX_SIG_CHARS = 128
"""A base64url Ed25519 signature is 86 characters; anything much longer is not one."""


class SignatureError(Exception):
    """A message whose signature is missing, malformed, unknown or wrong; says which."""


@dataclass(frozen=True, slots=True)
class Signed:
    """Who signed a message that verified, and under which fence."""

    signer: str
    """The signer's public nkey."""
    name: str
    """What the reader's configuration calls that key (an operator's name, `costguard`)."""
    fence: int
    """The fencing token the signature covers; NO_FENCE when the message has none."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """One identity's private key: signs payloads for the subjects it publishes on."""

    def __init__(self, seed: bytes) -> None:
        try:
            self._kp = nkeys.from_seed(bytearray(seed.strip()))
            self.public_key: str = bytes(self._kp.public_key).decode()
        except (nkeys.NkeysError, binascii.Error, ValueError, TypeError) as exc:
            raise ConfigError(
                f"not an nkey seed ({type(exc).__name__}); make one with `fleet keys new FILE`"
            ) from None

    def sign(self, subject: str, payload: bytes, fence: int = NO_FENCE) -> dict[str, str]:
        """The headers that sign `payload` published on `subject` (with `fence`, if any)."""
        sig = self._kp.sign(signed_bytes(subject, payload, fence))
        headers = {SIG_HEADER: _b64(sig), SIGNER_HEADER: self.public_key}
        if fence != NO_FENCE:
            headers[FENCE_HEADER] = str(fence)
        return headers

    def __repr__(self) -> str:  # never the seed
        return f"Signer({self.public_key})"


def new_seed() -> bytes:
    """A fresh random user nkey seed (`SU...`)."""
    raw = bytes(nacl.signing.SigningKey.generate())
    return bytes(nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER))


def write_seed(path: Path, seed: bytes) -> None:
    """Write a seed readable by its owner only (0600), replacing any file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as f:
        f.write(seed + b"\n")
    tmp.replace(path)


def read_seed(path: Path) -> bytes:
    """The seed in `path` (the first line that starts with S), or a ConfigError saying why."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the seed file {path}: {exc.strerror}") from None
    for line in text.splitlines():
        if line.strip().startswith(b"S"):
            return line.strip()
    raise ConfigError(f"{path} holds no nkey seed (a line starting with S)")


_VERIFY_KEYS: dict[str, nacl.signing.VerifyKey] = {}


def verify_key(public_key: str) -> nacl.signing.VerifyKey:
    """The Ed25519 key of a public nkey, its prefix and checksum checked (cached)."""
    key = _VERIFY_KEYS.get(public_key)
    if key is not None:
        return key
    if not looks_like_public_key(public_key):
        raise ValueError(f"{public_key[:60]!r} is not a public nkey (56 base32 characters)")
    raw = base64.b32decode(public_key)
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if nkeys.crc16(bytearray(body)) != crc or not nkeys.valid_public_prefix_byte(body[0]):
        raise ValueError(f"{public_key} is not a public nkey (bad checksum or prefix)")
    key = nacl.signing.VerifyKey(bytes(body[1:]))
    if len(_VERIFY_KEYS) < 1024:
        _VERIFY_KEYS[public_key] = key
    return key


def verify(
    subject: str, payload: bytes, headers: Mapping[str, str], trusted: Mapping[str, str]
) -> Signed:
    """Who of `trusted` (public key -> name) signed `payload` on `subject`; raises
    SignatureError naming what is wrong, so the reader can say it."""
    signer = headers.get(SIGNER_HEADER, "")
    sig = headers.get(SIG_HEADER, "")
    if not sig or not signer:
        raise SignatureError(f"not signed (no {SIG_HEADER} / {SIGNER_HEADER} header)")
    name = trusted.get(signer)
    if name is None:
        raise SignatureError(f"signed by {signer[:60]}, which is not a trusted key here")
    raw_fence = headers.get(FENCE_HEADER)
    fence = NO_FENCE
    if raw_fence is not None:
        if not raw_fence.isdigit() or len(raw_fence) > 19:
            raise SignatureError(f"{FENCE_HEADER} {raw_fence[:30]!r} is not a fencing token")
        fence = int(raw_fence)
    if len(sig) > MAX_SIG_CHARS:
        raise SignatureError(f"{SIG_HEADER} is not an Ed25519 signature")
    try:
        verify_key(signer).verify(signed_bytes(subject, payload, fence), _unb64(sig))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise SignatureError(
            f"the signature of {signer[:60]} ({name}) does not match this message on {subject}"
        ) from None
    except binascii.Error:
        raise SignatureError(f"{SIG_HEADER} is not base64url") from None
    return Signed(signer=signer, name=name, fence=fence)


def public_key_setting(settings: SigningSettings, key: str, what: str) -> str:
    """The configured public key `[signing] <key>`, checked; a ConfigError naming the
    setting and the fix when it is missing or malformed."""
    value = str(getattr(settings, key)).strip()
    if not value:
        raise ConfigError(
            f"[signing] {key} is not set: {what}. Set it (FLEET_SIGNING__{key.upper()}) to "
            "the public key `fleet keys public SEEDFILE` prints; `fleet up` does it for you"
        )
    try:
        verify_key(value)
    except ValueError as exc:
        raise ConfigError(f"[signing] {key}: {exc}") from None
    return value


def operator_keys(settings: SigningSettings) -> dict[str, str]:
    """`[signing] operators` (public key -> name), each key checked."""
    for key, name in settings.operators.items():
        try:
            verify_key(key)
        except ValueError as exc:
            raise ConfigError(f"[signing] operators: {exc}") from None
        if not name.strip():
            raise ConfigError(f"[signing] operators: {key} has an empty name")
    return dict(settings.operators)


def own_signer(settings: SigningSettings, service: str) -> Signer:
    """This service's signer from `[signing] seed` or `seed_file`; a ConfigError saying
    how to give one when neither is set."""
    if settings.seed:
        return Signer(settings.seed.encode())
    if settings.seed_file:
        return Signer(read_seed(Path(settings.seed_file)))
    raise ConfigError(
        f"the {service} signs what it publishes but has no key: set [signing] seed_file "
        "(FLEET_SIGNING__SEED_FILE) to a seed from `fleet keys new FILE`, or FLEET_SIGNING__SEED"
    )


def has_own_key(settings: SigningSettings) -> bool:
    """True when `[signing]` gives this service a seed of its own to sign with."""
    return bool(settings.seed or settings.seed_file)


def trusted_keys(settings: SigningSettings, *roles: str) -> dict[str, str]:
    """Public key -> role for each `[signing] <role>_key` that is set, each checked; a
    ConfigError naming the setting when one is malformed."""
    keys: dict[str, str] = {}
    for role in roles:
        value = str(getattr(settings, f"{role}_key")).strip()
        if not value:
            continue
        try:
            verify_key(value)
        except ValueError as exc:
            raise ConfigError(f"[signing] {role}_key: {exc}") from None
        keys[value] = role
    return keys


def signing_settings(env: Mapping[str, str] | None = None) -> SigningSettings:
    """`[signing]` alone, from fleet.toml and FLEET_SIGNING__*: for a process that is not a
    Service (the local worker) yet must check who signed what it acts on."""
    return table_settings("signing", SigningSettings, env)


@dataclass(frozen=True, slots=True)
class Authors:
    """Whom a reader believes one kind of message from (public key -> role).

    Empty: nobody's key was configured (a service started by hand or in a unit test),
    and the reader believes what it gets, as before signatures; the service says so at
    start. `fleet up` and a configured deployment always give the keys."""

    keys: Mapping[str, str]

    def problem(self, d: Delivery) -> str | None:
        """Why the message in `d` is not believed (not signed by one of `keys`), or None."""
        if not self.keys:
            return None
        try:
            verify(d.subject, d.data, d.headers, self.keys)
        except SignatureError as exc:
            return str(exc)
        return None

    def signed(self, d: Delivery) -> bool:
        """True when one of `keys` (at least one configured) signed the message in `d`."""
        return bool(self.keys) and self.problem(d) is None

    def unkeyed_warning(self, what: str, setting: str) -> str | None:
        """What to log at start when no key is configured, or None."""
        if self.keys:
            return None
        return (
            f"[signing] {setting} is not set: {what} are believed unsigned, so anyone who "
            f"can publish them is believed. Set FLEET_SIGNING__{setting.upper()} "
            "(`fleet up` does it for you)"
        )


def watcher_reports(settings: SigningSettings) -> Authors:
    """The watcher's key (`[signing] watcher_key`), for readers of unit events that leave
    its failure reports to the provisioner: a report is neither believed nor a forgery
    to dead-letter, since the provisioner's own signed event follows it."""
    return Authors(trusted_keys(settings, "watcher"))


def unkeyed(problem: str | None, *, binding: bool, log: logging.Logger) -> None:
    """Say at start that a key is missing (`problem`, None: nothing is). In a deployment
    that only binds to what `fleet init` made (`[nats] create_resources = false`, as
    `fleet up --secure` and the Kubernetes manifests run), that is a ConfigError: there,
    believing unsigned messages must not be a choice made by forgetting a setting. A
    service started by hand, or in a test, warns and goes on."""
    if problem is None:
        return
    if binding:
        raise ConfigError(
            f"{problem}. A deployment that only binds ([nats] create_resources = false) "
            "does not start without it"
        )
    log.warning(problem)
