"""Commands that may cost money, and the cost-guard's verdicts on them.

`Command` is a tagged union on `kind`: a Verdict carries the original command,
whatever it was, and decoders dispatch on the tag.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Count, Id, Message, Text, Token, Usd

ScaleMode = Literal["steady", "panic", "predictive"]
VerdictKind = Literal["approved", "denied", "held"]

MAX_COUNT = 1000
"""The most units one command may ask for; larger asks are split or refused."""

UnitCount = Annotated[int, Meta(ge=0, le=MAX_COUNT)]


class Command(Message, tag_field="kind", tag=str.lower, frozen=True, kw_only=True):
    """Base of everything the cost-guard judges."""

    id: Id
    pool: Token
    reason: Text = ""


class ScaleProposal(Command, frozen=True, kw_only=True):
    """The scaler's wish for a pool, on `fleet.scale.proposed.<pool>`."""

    current: Count
    desired: Count
    mode: ScaleMode = "steady"
    forecast: Annotated[float, Meta(ge=0.0, le=1e9)] | None = None
    """Forecast demand (requests in flight) at now + lead time, when predictive."""
    requester: Token = "scaler"


class ProvisionRequest(Command, frozen=True, kw_only=True):
    """Ask for new units, on `fleet.provision.requested`."""

    requester: Token
    gpu_model: Annotated[str, Meta(min_length=1, max_length=64)] = "any"
    count: Annotated[int, Meta(ge=1, le=MAX_COUNT)] = 1
    provider: Token | None = None
    max_usd_per_hour: Usd | None = None
    """Ceiling on the price of one unit; offers above it are not taken."""
    offer_id: Annotated[str, Meta(max_length=128)] | None = None
    """A specific offer chosen by placement; optional."""
    pin: bool = False
    """Explicit capacity: once approved, the scaler keeps the pool at least this many units
    larger than load alone would (a floor), until `duration_s` ends or they are released."""
    duration_s: Annotated[float, Meta(gt=0, le=30 * 86400)] | None = None
    """How long a pinned provision lasts, seconds; None: until released."""
    cores: Annotated[int, Meta(ge=1, le=1024)] | None = None
    """vCPUs of each unit, for providers that make units to order (Hypercore microVMs: a
    hosted agent's runner); None takes the provider's configured size. Providers that
    rent fixed machines ignore it."""
    memory_mb: Annotated[int, Meta(ge=64, le=4_194_304)] | None = None
    """Memory of each unit in MiB, likewise."""
    replaces: Token | None = None
    """The failed unit this request replaces (the provisioner's replacements): the
    cost-guard refuses it when a scale proposal made since the unit ended already counts
    on units enough, so the scaler and the replacement do not both add the unit back."""


class ReleaseRequest(Command, frozen=True, kw_only=True):
    """Ask to remove units, on `fleet.release.requested`: one unit or a count."""

    requester: Token
    unit: Token | None = None
    count: UnitCount | None = None
    """How many units to remove when no unit is named; the idlest go first."""


AnyCommand = ScaleProposal | ProvisionRequest | ReleaseRequest


class Verdict(Message, frozen=True, kw_only=True):
    """The cost-guard's decision, on `fleet.budget.approved|denied|held`."""

    id: Id
    """The id of the judged request."""
    decision: VerdictKind
    request: AnyCommand
    """The command as it was received."""
    command: ProvisionRequest | ReleaseRequest | None = None
    """The concrete command the provisioner carries out when approved."""
    usd_per_hour: Usd = 0.0
    """Change in burn rate this command causes (positive for new units)."""
    spent_today_usd: Usd = 0.0
    budget_usd: Usd = 0.0
    projected_today_usd: Usd = 0.0
    """Spend by the end of the day (UTC) at the burn rate after this command."""
    reason: Text = ""
    decided_by: Token = "costguard"


class DecideRequest(Message, frozen=True, kw_only=True):
    """An operator's decision on a held request, to `fleet.budget.decide.<id>`."""

    approve: bool
    operator: Token = "operator"
    """Informational: the cost-guard names the operator after the key that signed the
    decision (`Fleet-Signer`, mapped by `[signing] operators`), never after this field."""
    reason: Text = ""


class DecideReply(Message, frozen=True, kw_only=True):
    """The cost-guard's answer to a DecideRequest."""

    ok: bool
    id: str
    decision: VerdictKind | None = None
    error: str | None = None


REPLACEMENT_PREFIX = "replace-"
"""A failed unit's replacement is provisioned as `replace-<unit>`: whoever rented the
failed unit (a batch) recognises the replacement as its own."""


def replacement_id(unit: str) -> str:
    """The id of the provision request that replaces failed unit `unit`."""
    return f"{REPLACEMENT_PREFIX}{unit}"


def replaced_unit(command_id: str | None) -> str | None:
    """The failed unit a provision replaces, when `command_id` is a replacement's."""
    if command_id and command_id.startswith(REPLACEMENT_PREFIX):
        return command_id[len(REPLACEMENT_PREFIX) :]
    return None


def command_decoder() -> msgspec.json.Decoder[AnyCommand]:
    """A decoder for any command, dispatching on its `kind` tag."""
    return msgspec.json.Decoder(AnyCommand)


__all__ = [
    "MAX_COUNT",
    "REPLACEMENT_PREFIX",
    "AnyCommand",
    "Command",
    "DecideReply",
    "DecideRequest",
    "ProvisionRequest",
    "ReleaseRequest",
    "ScaleMode",
    "ScaleProposal",
    "Verdict",
    "VerdictKind",
    "command_decoder",
    "replaced_unit",
    "replacement_id",
]
