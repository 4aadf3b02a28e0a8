"""The budget gate as pure functions: `judge`, `decide` (a person's call) and `expire`.

`judge(ledger, request, policy, now) -> (ledger, verdict, audit)` reads no clock
and does no I/O. In order it:

1. refuses input it cannot judge (unknown pool, count out of range, ...) and
   returns the ledger it was given, untouched;
2. turns the request into the concrete command the provisioner carries out
   (a proposal's desired - current - units already pending becomes a
   provision; desired < current a release), id = the request's id, and
   refuses a replacement of a failed unit that a proposal made since the unit
   ended already covers (a proposal remembers its pool's desired count);
3. applies the requester's rate limit;
4. approves releases (they lower cost);
5. checks the committed burn rate (billing + reserved + new, USD/hour) against
   `max_burn_usd_per_hour`, and projects the UTC day's spend at the new burn rate:
   spent + (burn + reserved + new) x hours left. Above the hard cap: denied.
   A scaler's proposal is elastic: when only part of it fits under the burn cap
   or the daily budget, that part is approved and the verdict says so; an
   explicit provision request is all or nothing.
   Above the daily budget: denied, or held when a hard cap above the budget
   leaves room a person may grant. Adding more than the approval threshold
   per hour: held. Otherwise approved, and the new units are reserved.
"""

from __future__ import annotations

import math

import msgspec

from contracts.commands import (
    AnyCommand,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
    Verdict,
    VerdictKind,
)
from contracts.events import AuditRecord
from services.costguard import checks
from services.costguard.ledger import (
    Held,
    Ledger,
    Reservation,
    burn_rate,
    hours_left,
    pool_rate,
    projected,
    reserve,
    reserved_rate,
    roll,
    spent_today,
    take_token,
    with_target,
)
from services.costguard.plan import Plan, concretize, replacement_covered
from services.costguard.quote import Quote
from services.costguard.settings import Policy

ACTOR = "costguard"
WIRE_MAX_USD = 1e7
"""The contract's largest USD figure; absurd asks are reported at this value."""

Outcome = tuple[Ledger, Verdict, AuditRecord]


class NotHeld(LookupError):
    """`decide` was asked about a request that is not waiting for a person."""


def judge(
    ledger: Ledger, request: AnyCommand, policy: Policy, now: float, quote: Quote | None = None
) -> Outcome:
    """The verdict on `request` at `now`, with the ledger after it and the audit record."""
    bad = checks.problem(request, policy)
    if bad is not None:
        return ledger, *_outcome(
            "denied", request, None, 0.0, ledger, policy, now, f"Denied: {bad}."
        )
    state = roll(ledger, now)
    if isinstance(request, ScaleProposal):
        state = with_target(state, request.pool, request.desired, request.ts)
    plan = concretize(state, request, policy, now, quote)
    if plan.command is None:
        reason = f"Denied: nothing to do, {plan.note}."
        return state, *_outcome("denied", request, None, 0.0, state, policy, now, reason)
    covered = replacement_covered(state, plan.command, now)
    if covered is not None:
        reason = f"Denied: no replacement needed, {covered}."
        return state, *_outcome("denied", request, None, 0.0, state, policy, now, reason)
    requester = plan.command.requester
    state, ok = take_token(state, requester, policy.budget.rate_limit_per_min, now)
    if not ok:
        reason = (
            f"Denied: requester {requester!r} is over its rate limit of "
            f"{policy.budget.rate_limit_per_min:g} commands per minute; try again shortly."
        )
        return state, *_outcome("denied", request, plan.command, 0.0, state, policy, now, reason)
    if isinstance(plan.command, ReleaseRequest):
        reason = f"Approved: a release lowers cost ({plan.note}), so no budget check applies."
        verdict, audit = _outcome(
            "approved", request, plan.command, 0.0, state, policy, now, reason
        )
        return state, verdict, _with_impact(audit, -_release_saving(state, plan))
    return _judge_provision(state, request, plan, policy, now)


def affordable_units(state: Ledger, unit_usd_per_hour: float, policy: Policy, now: float) -> int:
    """How many more units at this price fit under the burn cap and the daily budget."""
    budget = policy.budget
    if unit_usd_per_hour <= 0:
        return MAX_UNITS
    committed = burn_rate(state) + reserved_rate(state, now)
    room = [(budget.auto_limit_usd - projected(state, now)) / max(hours_left(now), 1e-9)]
    if budget.max_burn_usd_per_hour is not None:
        room.append(budget.max_burn_usd_per_hour - committed)
    return max(0, min(MAX_UNITS, math.floor(min(room) / unit_usd_per_hour + 1e-9)))


MAX_UNITS = 1_000_000


def _shrink(plan: Plan, units: int) -> Plan:
    command = plan.command
    assert isinstance(command, ProvisionRequest)
    return msgspec.structs.replace(
        plan, command=msgspec.structs.replace(command, count=units), units=units
    )


def _judge_provision(
    state: Ledger, request: AnyCommand, plan: Plan, policy: Policy, now: float
) -> Outcome:
    budget = policy.budget
    partial = ""
    if isinstance(request, ScaleProposal) and plan.units > 1:
        fits = affordable_units(state, plan.unit_usd_per_hour, policy, now)
        if 0 < fits < plan.units:
            partial = (
                f" (approved {fits} of the {plan.units} asked; the rest would exceed the budget)"
            )
            plan = _shrink(plan, fits)
    rate = plan.units * plan.unit_usd_per_hour
    proj = projected(state, now, rate)
    numbers = (
        f"{plan.units} x ${plan.unit_usd_per_hour:.2f}/h = ${rate:.2f}/h takes the day to "
        f"${proj:.2f}"
    )
    command = plan.command
    assert isinstance(command, ProvisionRequest)
    if proj > budget.cap_usd:
        limit = f"the hard cap of ${budget.cap_usd:.2f}"
        if budget.cap_usd == budget.daily_usd:
            limit = f"the daily budget of ${budget.daily_usd:.2f} (also the hard cap)"
        reason = f"Denied: {numbers}, above {limit}."
        return state, *_outcome("denied", request, command, rate, state, policy, now, reason)
    committed = burn_rate(state) + reserved_rate(state, now) + rate
    if budget.max_burn_usd_per_hour is not None and committed > budget.max_burn_usd_per_hour:
        reason = (
            f"Denied: {plan.units} x ${plan.unit_usd_per_hour:.2f}/h would commit the fleet to "
            f"${committed:.2f}/h, above the burn cap of ${budget.max_burn_usd_per_hour:.2f}/h."
        )
        return state, *_outcome("denied", request, command, rate, state, policy, now, reason)
    if proj > budget.auto_limit_usd:  # and within the cap, so above the daily budget
        reason = (
            f"Held: {numbers}, above the daily budget of ${budget.daily_usd:.2f} but within "
            f"the hard cap of ${budget.cap_usd:.2f}; an operator must approve it."
        )
        return _hold(state, request, plan, rate, policy, now, reason)
    if rate > budget.approval_threshold_usd_per_hour:
        reason = (
            f"Held: {numbers}, within budget, but ${rate:.2f}/h is above the approval "
            f"threshold of ${budget.approval_threshold_usd_per_hour:.2f}/h; "
            f"`fleet approve {request.id}` or `fleet reject {request.id}`."
        )
        return _hold(state, request, plan, rate, policy, now, reason)
    reason = f"Approved: {numbers}, within the daily budget of ${budget.daily_usd:.2f}{partial}."
    return _approve(
        state, request, command, plan.units, plan.unit_usd_per_hour, policy, now, reason
    )


def _approve(
    state: Ledger,
    request: AnyCommand,
    command: ProvisionRequest,
    units: int,
    unit_usd_per_hour: float,
    policy: Policy,
    now: float,
    reason: str,
    decided_by: str = ACTOR,
) -> Outcome:
    res = Reservation(
        pool=command.pool,
        units=units,
        usd_per_hour=unit_usd_per_hour,
        expires_at=now + policy.budget.reservation_timeout_s,
    )
    rate = units * unit_usd_per_hour
    before = state
    state = reserve(state, command.id, res)
    verdict, audit = _outcome(
        "approved", request, command, rate, before, policy, now, reason, decided_by
    )
    return state, verdict, audit


def _hold(
    state: Ledger,
    request: AnyCommand,
    plan: Plan,
    rate: float,
    policy: Policy,
    now: float,
    reason: str,
) -> Outcome:
    assert plan.command is not None
    held = Held(
        request=request,
        command=plan.command,
        pool=plan.command.pool,
        units=plan.units,
        usd_per_hour=rate,
        expires_at=now + policy.budget.hold_timeout_s,
    )
    verdict, audit = _outcome("held", request, plan.command, rate, state, policy, now, reason)
    state = msgspec.structs.replace(state, held={**state.held, request.id: held})
    return state, verdict, audit


def decide(
    ledger: Ledger,
    request_id: str,
    approve: bool,
    operator: str,
    note: str,
    policy: Policy,
    now: float,
) -> Outcome:
    """A person's call on a held request; an approval re-checks the hard cap now.

    Raises NotHeld when `request_id` is not waiting for a decision.
    """
    held = ledger.held.get(request_id)
    if held is None:
        raise NotHeld(request_id)
    state = roll(ledger, now)
    state = msgspec.structs.replace(
        state, held={k: h for k, h in state.held.items() if k != request_id}
    )
    said = f" ({note})" if note else ""

    def deny(reason: str) -> Outcome:
        return state, *_outcome(
            "denied",
            held.request,
            held.command,
            held.usd_per_hour,
            state,
            policy,
            now,
            reason,
            operator,
        )

    if not approve:
        return deny(f"Denied: rejected by {operator}{said}.")
    if isinstance(held.command, ReleaseRequest):
        reason = f"Approved by {operator}{said}."
        return state, *_outcome(
            "approved", held.request, held.command, 0.0, state, policy, now, reason, operator
        )
    proj = projected(state, now, held.usd_per_hour)
    cap = policy.budget.cap_usd
    burn_cap = policy.budget.max_burn_usd_per_hour
    committed = burn_rate(state) + reserved_rate(state, now) + held.usd_per_hour
    if burn_cap is not None and committed > burn_cap:
        return deny(
            f"Denied: approved by {operator}{said}, but at decision time it would commit the "
            f"fleet to ${committed:.2f}/h, above the burn cap of ${burn_cap:.2f}/h."
        )
    if proj > cap:
        return deny(
            f"Denied: approved by {operator}{said}, but at decision time "
            f"${held.usd_per_hour:.2f}/h takes the day to ${proj:.2f}, above the hard cap of "
            f"${cap:.2f}."
        )
    unit_price = held.usd_per_hour / held.units  # a held provision has 1 unit or more
    reason = (
        f"Approved by {operator}{said}: ${held.usd_per_hour:.2f}/h takes the day to "
        f"${proj:.2f}, within the hard cap of ${cap:.2f}."
    )
    return _approve(
        state, held.request, held.command, held.units, unit_price, policy, now, reason, operator
    )


def expire(
    ledger: Ledger, policy: Policy, now: float
) -> tuple[Ledger, list[tuple[Verdict, AuditRecord]]]:
    """Deny held requests nobody decided within `hold_timeout_s`; drop stale reservations."""
    state = roll(ledger, now)
    out: list[tuple[Verdict, AuditRecord]] = []
    for rid, held in sorted(ledger.held.items()):
        if held.expires_at > now:
            continue
        state = msgspec.structs.replace(
            state, held={k: h for k, h in state.held.items() if k != rid}
        )
        reason = (
            f"Denied: nobody approved it within {policy.budget.hold_timeout_s:g} s of being held."
        )
        out.append(
            _outcome(
                "denied", held.request, held.command, held.usd_per_hour, state, policy, now, reason
            )
        )
    return state, out


def _release_saving(ledger: Ledger, plan: Plan) -> float:
    command = plan.command
    assert isinstance(command, ReleaseRequest)
    if command.unit is not None:
        unit = ledger.units.get(f"{command.pool}/{command.unit}")
        return unit.usd_per_hour if unit else 0.0
    n, rate = pool_rate(ledger, command.pool)
    return (rate / n) * min(n, command.count or 0) if n else 0.0


def _wire(x: float) -> float:
    return min(WIRE_MAX_USD, max(0.0, x)) if math.isfinite(x) else WIRE_MAX_USD


def _outcome(
    decision: VerdictKind,
    request: AnyCommand,
    command: ProvisionRequest | ReleaseRequest | None,
    rate: float,
    ledger: Ledger,
    policy: Policy,
    now: float,
    reason: str,
    decided_by: str = ACTOR,
) -> tuple[Verdict, AuditRecord]:
    verdict = Verdict(
        id=request.id,
        ts=now,
        decision=decision,
        request=request,
        command=command,
        usd_per_hour=_wire(rate),
        spent_today_usd=_wire(spent_today(ledger, now)),
        budget_usd=_wire(policy.budget.daily_usd),
        projected_today_usd=_wire(projected(ledger, now, rate)),
        reason=reason[:4096],
        decided_by=decided_by,
    )
    impact = rate if decision == "approved" else 0.0
    audit = AuditRecord(
        id=f"{request.id}:{decision}"[:128] if request.id else None,
        ts=now,
        actor=ACTOR,
        action=f"{decision} {type(request).__name__}",
        reasoning=reason[:4096],
        result=decision,
        cost_impact_usd_per_hour=min(1e7, impact),  # an approval adds burn: never below 0
        refs={
            "request": str(request.id),
            "pool": str(request.pool),
            "requester": str(request.requester),
            "decided_by": decided_by,
        },
    )
    return verdict, audit


def _with_impact(audit: AuditRecord, usd_per_hour: float) -> AuditRecord:
    return msgspec.structs.replace(  # a release saves burn: never above 0
        audit, cost_impact_usd_per_hour=max(-1e7, usd_per_hour)
    )
