"""The one Protocol every provider adapter implements, and its typed errors.

Adapters translate a provider's API into these calls and its failures into
these errors; the provisioner's retry, breaker and failover logic only ever
sees the errors below.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, runtime_checkable

import msgspec

from contracts.offers import Offer, OfferFilter

UnitStatus = Literal["booting", "ready", "stopped", "failed", "terminated"]


class ProviderUnit(msgspec.Struct, frozen=True, kw_only=True):
    """A unit as the provider reports it."""

    provider: str
    unit_id: str
    """The provider's id for the instance, VM, pod or process."""
    status: UnitStatus
    gpu_model: str = ""
    usd_per_hour: float = 0.0
    label: str = ""
    """Our tag on the unit (the idempotency key), when the provider keeps one."""
    address: str | None = None
    created_ts: float = 0.0
    detail: str = ""
    """Why the provider reports it failed, when it knows (a process's last words)."""


def reported(found: ProviderUnit) -> str:
    """What a unit's end says in its event: the provider's word and, when it knows, why."""
    said = f"{found.provider} reports it {found.status}"
    return f"{said}: {found.detail}" if found.detail else said


class ProviderError(Exception):
    """Base of every provider failure; names the provider."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class Retryable(ProviderError):
    """Try again later: 5xx, timeouts, 429s."""

    def __init__(self, provider: str, message: str, after_s: float | None = None) -> None:
        super().__init__(provider, message)
        self.after_s = after_s


class Unconfirmed(Retryable):
    """The request may have been carried out but its answer was lost (a timeout, a dropped
    connection, an empty reply to a create). Retrying a create blindly could rent twice, so
    `create_missing` waits for the unit to show in the provider's list first."""


class CapacityError(ProviderError):
    """This offer is gone or the provider has no capacity: try the next offer or provider."""


class QuotaExceeded(ProviderError):
    """The account's quota or spending limit at the provider is reached."""


class NotFound(ProviderError):
    """The unit or offer does not exist (destroying it again is a success)."""


class AuthError(ProviderError):
    """Credentials missing or refused; the message names the setting to fix."""

    def __init__(self, provider: str, message: str, setting: str) -> None:
        super().__init__(provider, f"{message} (set {setting})")
        self.setting = setting


class Permanent(ProviderError):
    """The provider refused the request as invalid (bad image, bad parameters): retrying
    the same request will not help; fix the settings or the command."""


class Unavailable(ProviderError):
    """The provider is not configured here (no credentials or base URL)."""


@runtime_checkable
class Provider(Protocol):
    """A place to rent units from."""

    name: str

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """Offers matching `flt`, any order."""
        ...

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Start `count` units from `offer`. Calling again with the same key must not
        create more units: adapters look up units labelled with the key first.

        May return fewer than `count` units when the provider ran out part-way (Lambda
        launches what it can); callers compare the length. Raises CapacityError only
        when nothing could be started."""
        ...

    async def list(self) -> list[ProviderUnit]:
        """Every unit this account has at the provider, including ones we did not start."""
        ...

    async def destroy(self, unit_id: str) -> None:
        """Stop billing for `unit_id`; NotFound when it is already gone."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class PendingCreates:
    """Creates whose answer was lost, by label, until the provider's list shows a unit with
    that label or `window_s` passes. In memory: after a restart the list alone decides."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._sent: dict[str, float] = {}

    def note(self, label: str, now: float | None = None) -> None:
        """Remember that a create for `label` may have happened."""
        self._sent[label] = time.monotonic() if now is None else now

    def clear(self, label: str) -> None:
        """The unit showed up (or the create is known to have failed)."""
        self._sent.pop(label, None)

    def wait_s(self, label: str, now: float | None = None) -> float | None:
        """Seconds still to wait before creating `label` again, or None when nothing is pending."""
        sent = self._sent.get(label)
        if sent is None:
            return None
        left = sent + self.window_s - (time.monotonic() if now is None else now)
        if left <= 0:
            self._sent.pop(label, None)
            return None
        return left


async def create_missing(
    existing: list[ProviderUnit],
    key: str,
    count: int,
    start_one: Callable[[], Awaitable[ProviderUnit]],
    gone: tuple[str, ...] = ("terminated", "failed"),
    pending: PendingCreates | None = None,
    provider: str = "",
) -> list[ProviderUnit]:
    """`count` live units labelled `key`: the ones `existing` already has, then new ones
    from `start_one`. A CapacityError part-way returns what there is; it is raised only
    when there is nothing. This is what makes `create` idempotent by its key.

    With `pending`, a create whose answer was lost (Unconfirmed) is remembered, and a retry
    that does not yet see its unit in `existing` raises Unconfirmed again instead of
    renting a second one, until the window passes."""
    units = [u for u in existing if u.label == key and u.status not in gone]
    if pending is not None and len(units) < count:
        wait = None if units else pending.wait_s(key)
        if wait is not None:
            raise Unconfirmed(
                provider,
                f"a create for {key} was sent but not confirmed; waiting up to {wait:.0f}s "
                "for it to appear in the list before creating again",
                after_s=wait,
            )
        pending.clear(key)
    while len(units) < count:
        try:
            units.append(await start_one())
        except CapacityError:
            if units:
                break
            raise
        except Unconfirmed:
            if pending is not None:
                pending.note(key)
            raise
    return units[:count]
