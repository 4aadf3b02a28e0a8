"""Signed messages: the headers that carry a signature and the exact bytes it covers.

Money moves on three kinds of message that anyone able to publish on the bus
could otherwise forge: the cost-guard's verdicts (`fleet.budget.approved`), an
operator's decision on a held request (`fleet.budget.decide.<id>`) and the
provisioner's unit events (`fleet.unit.<pool>.<unit>`, which the ledger bills
from). Each is signed with Ed25519 (NATS nkeys) by its one legitimate author,
and its reader believes it only when the signature verifies against a public key
it was configured with (docs/adr/0012-signed-messages.md).

The signature travels in NATS headers, next to the payload it covers, so the
payload stays the plain JSON the contract describes and a reader that does not
check signatures reads it as before. What is signed is `signed_bytes(...)`: a
version tag, the subject, the fencing token and the payload exactly as
published, so a signature cannot be moved to another subject (an approval of
one held request to another, a denied verdict to `approved`) or to another
fence, and nothing has to be re-encoded to be checked.
"""

from __future__ import annotations

import re

SIG_HEADER = "Fleet-Sig"
"""The Ed25519 signature of `signed_bytes(...)`, base64url without padding."""
SIGNER_HEADER = "Fleet-Signer"
"""The signer's public nkey (`U...`); the reader looks it up among the keys it trusts."""
FENCE_HEADER = "Fleet-Fence"
"""The signer's fencing token (a verdict's: the cost-guard's lease revision), a decimal
integer; absent on messages that are not fenced."""

SIGNED_VERSION = b"fleet-sig/1"
"""First line of every signed byte string; a new canonical form gets a new tag."""

NO_FENCE = -1
"""The fence written into the signed bytes of a message that carries none."""

PUBLIC_KEY = re.compile(r"^[A-Z2-7]{56}$")
"""What a public nkey looks like: 56 base32 characters (its checksum is checked on use)."""


def signed_bytes(subject: str, payload: bytes, fence: int = NO_FENCE) -> bytes:
    """The canonical bytes a signature covers: tag, subject, fence, payload, one per line.

    The payload is the last part and is taken as published (msgspec's encoding),
    so the reader checks the very bytes it decodes, whatever they contain."""
    return b"\n".join((SIGNED_VERSION, subject.encode(), str(int(fence)).encode(), payload))


def signature_headers(fenced: bool) -> tuple[str, ...]:
    """The headers a signed message carries (with the fence when `fenced`)."""
    return (SIG_HEADER, SIGNER_HEADER, FENCE_HEADER) if fenced else (SIG_HEADER, SIGNER_HEADER)


def looks_like_public_key(text: str) -> bool:
    """True when `text` has the shape of a public nkey (not yet its checksum)."""
    return bool(PUBLIC_KEY.match(text)) and text[0] in "UAONC"


__all__ = [
    "FENCE_HEADER",
    "NO_FENCE",
    "SIGNED_VERSION",
    "SIGNER_HEADER",
    "SIG_HEADER",
    "looks_like_public_key",
    "signature_headers",
    "signed_bytes",
]
