"""What makes a command impossible to judge, said exactly as the requester reads it,
at each limit's edge; and which offer prices a provision."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.commands import ReleaseRequest, ScaleProposal
from contracts.offers import Offer
from services.costguard.checks import problem
from services.costguard.quote import Quote, best_offer, offer_filter
from services.costguard.settings import Policy, with_adhoc, with_agent_pool
from services.kit.pools import PoolConfig
from tests.test_costguard_judge import NOON, policy, provision


def up(current: int, desired: int, pool: str = "h100") -> ScaleProposal:
    return ScaleProposal(id="p", pool=pool, current=current, desired=desired, ts=NOON)


def release(**what: Any) -> ReleaseRequest:
    return ReleaseRequest(id="x", requester="brain", pool="h100", ts=NOON, **what)


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (
            provision(id=" "),
            "the request has no id; send one so its verdict can be matched and de-duplicated",
        ),
        (provision(pool="nope"), "unknown pool 'nope'; configured pools: h100, small"),
        (provision(provider="aws"), "unknown provider 'aws' for pool 'h100'; it uses sim, vastai"),
        (
            provision(gpu_model="A100"),
            "pool 'h100' runs H100, not 'A100'; ask for that model or use another pool",
        ),
        (provision(pool="small", count=6), "count 6 must be a whole number from 1 to 5"),
        (
            provision(max_usd_per_hour="cheap"),
            "max_usd_per_hour 'cheap' must be a finite number of USD from 0",
        ),
        (up(0, 6, "small"), "desired 6 is above pool 'small' max 5"),
        (up(-1, 2), "current -1 must be a whole number from 0 to 1000000"),
        (up(0, 1_000_001), "desired 1000001 must be a whole number from 0 to 1000000"),
        (up(5, 1006), "a step of 1001 units exceeds 1000"),
        (release(), "a release names a unit or a count; this one has neither"),
        (release(count=1001), "count 1001 must be a whole number from 1 to 1000"),
    ],
)
def test_a_command_that_cannot_be_judged_is_told_why(request_: Any, said: str) -> None:
    assert problem(request_, policy()) == said


@pytest.mark.parametrize(
    "request_",
    [
        provision(pool="small", count=5),  # the pool's max exactly
        provision(pool="small", gpu_model="L40S"),  # a pool of any model takes any model
        provision(gpu_model="any"),
        provision(max_usd_per_hour=0.0),
        provision(max_usd_per_hour=1e7),
        up(0, 5, "small"),
        up(5, 1005),  # a step of exactly 1000
        up(1005, 5),
        release(count=1),
        release(unit="u1"),
    ],
)
def test_a_command_at_each_limit_can_be_judged(request_: Any) -> None:
    assert problem(request_, policy()) is None


def test_with_no_pools_configured_the_reason_says_none() -> None:
    assert problem(provision(), Policy()) == "unknown pool 'h100'; configured pools: none"


def test_the_views_of_agent_and_adhoc_pools_are_not_named_as_configured() -> None:
    """The cost-guard keeps a view of each hosted agent's and ad-hoc pool it has seen,
    a deleted agent's too; an operator reading why a pool is unknown sees only theirs."""
    seen = with_adhoc(with_agent_pool(policy(), "agents-gone", "local"), "adhoc-a100")
    assert problem(provision(pool="nope"), seen) == (
        "unknown pool 'nope'; configured pools: h100, small"
    )
    assert problem(provision(pool="agents-gone", gpu_model="CPU"), seen) is None


# -- quotes --------------------------------------------------------------------------------
POOL = PoolConfig(gpu_model="H100", providers=["sim", "vastai"], max_usd_per_hour=3.0)


def offer(provider: str, usd: float, **kw: Any) -> Offer:
    return Offer(
        provider=provider, offer_id=f"{provider}-{usd}", gpu_model="H100", usd_per_hour=usd, **kw
    )


def test_the_cheapest_allowed_offer_within_the_ceiling_prices_a_provision() -> None:
    offers = [offer("vastai", 2.5), offer("sim", 2.0), offer("aws", 1.0), offer("sim", 3.5)]
    assert best_offer(offers, POOL, 3.0) == Quote(
        provider="sim", usd_per_hour=2.0, offer_id="sim-2.0"
    )
    assert best_offer(offers, POOL, 3.0, "vastai") == Quote(
        provider="vastai", usd_per_hour=2.5, offer_id="vastai-2.5"
    )
    assert best_offer([offer("sim", 3.0)], POOL, 3.0) is not None  # the ceiling exactly
    assert best_offer([offer("sim", 3.01)], POOL, 3.0) is None


def test_ties_go_to_the_pools_first_provider() -> None:
    tie = [offer("vastai", 2.0), offer("sim", 2.0)]
    assert best_offer(tie, POOL, 3.0).provider == "sim"  # type: ignore[union-attr]
    flipped = msgspec.structs.replace(POOL, providers=["vastai", "sim"])
    assert best_offer(tie, flipped, 3.0).provider == "vastai"  # type: ignore[union-attr]


def test_free_sold_out_broken_and_other_model_offers_are_passed_over() -> None:
    for bad in (
        offer("sim", 0.0),
        offer("sim", float("nan")),
        offer("sim", 1.0, available=0),
        msgspec.structs.replace(offer("sim", 1.0), gpu_model="A100"),
    ):
        assert best_offer([bad], POOL, 3.0) is None, bad
    assert best_offer([offer("sim", 1.0, available=1)], POOL, 3.0) is not None
    anything = msgspec.structs.replace(POOL, gpu_model="any")
    other = msgspec.structs.replace(offer("sim", 1.0), gpu_model="A100")
    assert best_offer([other], anything, 3.0) is not None


def test_the_offers_asked_for_name_the_model_ceiling_and_provider() -> None:
    flt = offer_filter(POOL, "any", 2.5, "vastai")
    assert (flt.gpu_model, flt.max_usd_per_hour, flt.provider) == ("H100", 2.5, "vastai")
    assert offer_filter(POOL, "L40S", 2.5, None).gpu_model == "L40S"
    anything = msgspec.structs.replace(POOL, gpu_model="any")
    assert offer_filter(anything, "any", 1.0, None).gpu_model is None
