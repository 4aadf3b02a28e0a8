"""Whatever arrives, in whatever order, the day's committed spend stays in budget.

Committed = spent so far + (burn + reserved) x hours left in the UTC day. Units
start only from approved reservations, at no more than the reserved price (the
command's price ceiling), and within one UTC day: at midnight a standing fleet
starts the new day's spend, which no gate on new commands can undo.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal
from contracts.events import UnitEvent
from services.costguard.judge import decide, expire, judge
from services.costguard.ledger import DAY_S, Ledger, apply_unit_event, projected
from services.costguard.quote import Quote
from services.costguard.settings import BudgetSettings, Policy
from services.kit.pools import PoolConfig

START = 20_000 * DAY_S + 60.0
END = START + DAY_S - 120.0
REQUESTERS = ["scaler", "brain", "gateway", "alice"]

step = st.one_of(
    st.tuples(st.just("wait"), st.floats(0, 3 * 3600)),
    st.tuples(
        st.just("provision"),
        st.sampled_from(REQUESTERS),
        st.integers(1, 40),
        st.sampled_from(["a", "b"]),
        st.one_of(st.none(), st.floats(0.1, 6.0)),
    ),
    st.tuples(
        st.just("propose"), st.integers(0, 20), st.integers(0, 40), st.sampled_from(["a", "b"])
    ),
    st.tuples(st.just("release"), st.sampled_from(REQUESTERS), st.integers(1, 10)),
    st.tuples(st.just("boot"), st.integers(0, 50), st.floats(0.0, 1.0)),
    st.tuples(st.just("stop"), st.integers(0, 50)),
    st.tuples(st.just("decide"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("expire")),
)


@settings(max_examples=300, deadline=None)
@given(
    daily=st.floats(5, 2000),
    cap_factor=st.sampled_from([1.0, 1.5]),
    threshold=st.floats(0.5, 100),
    steps=st.lists(step, max_size=60),
)
def test_committed_spend_never_exceeds_the_budget(
    daily: float, cap_factor: float, threshold: float, steps: list[tuple]
) -> None:
    budget = msgspec.convert(
        {
            "daily_usd": daily,
            "hard_cap_usd": daily * cap_factor,
            "approval_threshold_usd_per_hour": threshold,
            "rate_limit_per_min": 5,
            "hold_timeout_s": 1800,
            "reservation_timeout_s": 7200,
        },
        BudgetSettings,
    )
    pol = Policy(
        budget=budget,
        pools={
            "a": PoolConfig(gpu_model="H100", providers=["sim"], max_usd_per_hour=4.0),
            "b": PoolConfig(providers=["sim", "vastai"], max_usd_per_hour=1.5),
        },
    )
    ledger, now, n = Ledger(), START, 0
    person_approved = False
    for s in steps:
        n += 1
        kind = s[0]
        if kind == "wait":
            now = min(END, now + s[1])
        elif kind == "provision":
            _, who, count, pool, price = s
            req = ProvisionRequest(
                id=f"q{n}", requester=who, pool=pool, count=count, max_usd_per_hour=price
            )
            quote = Quote(provider="sim", usd_per_hour=0.5) if n % 3 == 0 else None
            ledger, _, _ = judge(ledger, req, pol, now, quote)
        elif kind == "propose":
            _, current, desired, pool = s
            req = ScaleProposal(id=f"p{n}", pool=pool, current=current, desired=desired)
            ledger, _, _ = judge(ledger, req, pol, now)
        elif kind == "release":
            rel = ReleaseRequest(id=f"r{n}", requester=s[1], pool="a", count=s[2])
            ledger, _, _ = judge(ledger, rel, pol, now)
        elif kind == "boot" and ledger.reservations:
            cid = sorted(ledger.reservations)[s[1] % len(ledger.reservations)]
            res = ledger.reservations[cid]
            event = UnitEvent(
                pool=res.pool,
                unit=f"u{n}",
                state="booting",
                usd_per_hour=res.usd_per_hour * s[2],
                command_id=cid,
                ts=now,
            )
            ledger = apply_unit_event(ledger, event, now)
        elif kind == "stop" and ledger.units:
            key = sorted(ledger.units)[s[1] % len(ledger.units)]
            pool, unit_id = key.split("/")
            event = UnitEvent(pool=pool, unit=unit_id, state="terminated", ts=now)
            ledger = apply_unit_event(ledger, event, now)
        elif kind == "decide" and ledger.held:
            rid = sorted(ledger.held)[s[1] % len(ledger.held)]
            ledger, verdict, _ = decide(ledger, rid, s[2], "alice", "", pol, now)
            person_approved |= verdict.decision == "approved"
        elif kind == "expire":
            ledger, _ = expire(ledger, pol, now)
        committed = projected(ledger, now)
        assert committed <= budget.cap_usd + 1e-6, (committed, budget.cap_usd)
        if not person_approved:
            assert committed <= budget.daily_usd + 1e-6, (committed, budget.daily_usd)
