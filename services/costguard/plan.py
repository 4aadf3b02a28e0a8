"""Turn a request into the concrete command the provisioner carries out, priced.

A proposal becomes a provision of desired - current - units already pending
for the pool (approved and not yet billing, or held), or a release of
current - desired; `current` is the larger of the scaler's count and the units
the ledger bills in the pool (the watcher may not have seen a unit that just
started billing). The command's id is the request's id, so a redelivered
request yields the same command and the provisioner's de-duplication holds.
A provision is priced at the cheapest current offer within the ceiling (the
pool's `max_usd_per_hour`, lowered by the request's own), and the command
carries that price as its ceiling: the provisioner can never pay more than
the cost-guard counted. Without an offer the ceiling itself is the estimate.
"""

from __future__ import annotations

import msgspec

from contracts.commands import AnyCommand, ProvisionRequest, ReleaseRequest, ScaleProposal
from services.costguard.ledger import Ledger, pending_units, pool_rate
from services.costguard.quote import Quote
from services.costguard.settings import Policy


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The concrete command for a request, and what it costs."""

    command: ProvisionRequest | ReleaseRequest | None
    units: int = 0
    unit_usd_per_hour: float = 0.0
    note: str = ""


def concretize(
    ledger: Ledger, request: AnyCommand, policy: Policy, now: float, quote: Quote | None
) -> Plan:
    """The concrete command for `request`; its id is the request's, so redeliveries match."""
    match request:
        case ScaleProposal():
            if request.desired < request.current:
                count = request.current - request.desired
                release = ReleaseRequest(
                    id=request.id,
                    ts=request.ts,
                    requester=request.requester,
                    pool=request.pool,
                    count=count,
                    reason=request.reason,
                )
                return Plan(command=release, note=f"{count} fewer units in {request.pool}")
            pending = pending_units(ledger, request.pool, now)
            # The scaler counts what the watcher has seen; units that started billing
            # since (a replacement booting) may not be in it yet, but are in the ledger.
            have = max(request.current, pool_rate(ledger, request.pool)[0])
            count = request.desired - have - pending
            if count <= 0:
                return Plan(
                    command=None,
                    note=(
                        f"pool {request.pool} wants {request.desired}, has {have} "
                        f"and {pending} pending"
                    ),
                )
            ask = ProvisionRequest(
                id=request.id,
                ts=request.ts,
                requester=request.requester,
                pool=request.pool,
                count=count,
                reason=request.reason,
            )  # any model: priced as the pool's
            return _priced(ask, policy, quote)
        case ProvisionRequest():
            return _priced(request, policy, quote)
        case ReleaseRequest():
            what = f"unit {request.unit}" if request.unit else f"{request.count} units"
            return Plan(command=request, note=f"{what} of {request.pool}")


def _priced(ask: ProvisionRequest, policy: Policy, quote: Quote | None) -> Plan:
    pool = policy.pools[ask.pool]
    ceiling = pool.max_usd_per_hour
    if ask.max_usd_per_hour is not None:
        ceiling = min(ceiling, ask.max_usd_per_hour)
    changes: dict[str, object] = {"max_usd_per_hour": ceiling}
    if ask.gpu_model == "any":
        changes["gpu_model"] = pool.gpu_model
    price = ceiling  # no offer known: the ceiling is the estimate
    allowed = [ask.provider] if ask.provider else pool.providers
    if quote is not None and quote.provider in allowed and 0 < quote.usd_per_hour <= ceiling:
        price = quote.usd_per_hour
        changes.update(max_usd_per_hour=price, provider=quote.provider, offer_id=quote.offer_id)
    command = msgspec.structs.replace(ask, **changes)
    return Plan(command=command, units=ask.count, unit_usd_per_hour=price)


def replacement_covered(ledger: Ledger, command: AnyCommand, now: float) -> str | None:
    """Why the replacement `command` is not needed, or None when it is (or is no
    replacement). A failed unit is answered twice: the provisioner asks to replace it,
    and the scaler, seeing the pool short, proposes to grow it. Whichever comes second
    must not add the unit again. A proposal second finds the replacement pending (see
    `concretize`); a replacement second is refused here when a proposal made since the
    unit ended wants no more units than the pool has billing or pending."""
    if not isinstance(command, ProvisionRequest) or command.replaces is None:
        return None
    target = ledger.targets.get(command.pool)
    ended = ledger.ended.get(f"{command.pool}/{command.replaces}")
    if target is None or ended is None or target.ts < ended:
        return None  # no proposal has seen the loss yet
    have = pool_rate(ledger, command.pool)[0] + pending_units(ledger, command.pool, now)
    if have < target.desired:
        return None
    return (
        f"pool {command.pool} already has {have} units billing or pending, and the scale "
        f"proposal made after {command.replaces} ended wants {target.desired}: the scaler "
        "has replaced it"
    )
