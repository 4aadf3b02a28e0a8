"""How a request becomes the concrete, priced command the provisioner carries out:
plain values, every field the provisioner will read."""

from __future__ import annotations

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal
from services.costguard.judge import judge
from services.costguard.ledger import Ledger
from services.costguard.plan import concretize
from services.costguard.quote import Quote
from tests.test_costguard_judge import NOON, policy, provision

SIM = Quote(provider="sim", usd_per_hour=1.5, offer_id="sim-1")


def test_a_proposal_down_is_a_release_that_keeps_its_id_time_and_reason() -> None:
    down = ScaleProposal(id="p1", pool="h100", current=5, desired=2, reason="quiet", ts=NOON - 5)
    plan = concretize(Ledger(), down, policy(), NOON, None)
    assert plan.command == ReleaseRequest(
        id="p1", ts=NOON - 5, requester="scaler", pool="h100", count=3, reason="quiet"
    )
    _, verdict, _ = judge(Ledger(), down, policy(), NOON)
    assert verdict.reason == (
        "Approved: a release lowers cost (3 fewer units in h100), so no budget check applies."
    )


def test_a_proposal_up_is_a_provision_of_the_pools_model_priced_by_the_quote() -> None:
    up = ScaleProposal(id="p2", pool="h100", current=1, desired=3, reason="busy", ts=NOON - 5)
    plan = concretize(Ledger(), up, policy(), NOON, SIM)
    assert plan.command == ProvisionRequest(
        id="p2",
        ts=NOON - 5,
        requester="scaler",
        pool="h100",
        gpu_model="H100",
        count=2,
        reason="busy",
        provider="sim",
        max_usd_per_hour=1.5,
        offer_id="sim-1",
    )
    assert (plan.units, plan.unit_usd_per_hour) == (2, 1.5)


def test_a_named_release_says_which_unit_and_a_counted_one_how_many() -> None:
    for what, words in (({"unit": "u7"}, "unit u7 of h100"), ({"count": 2}, "2 units of h100")):
        rel = ReleaseRequest(id="x", requester="brain", pool="h100", ts=NOON, **what)  # type: ignore[arg-type]
        _, verdict, _ = judge(Ledger(), rel, policy(), NOON)
        assert verdict.reason == (
            f"Approved: a release lowers cost ({words}), so no budget check applies."
        )


def test_a_quote_is_taken_only_from_an_allowed_provider_within_the_ceiling() -> None:
    def priced(ask: ProvisionRequest, quote: Quote) -> tuple[float, str | None]:
        plan = concretize(Ledger(), ask, policy(), NOON, quote)
        assert isinstance(plan.command, ProvisionRequest)
        assert plan.command.max_usd_per_hour == plan.unit_usd_per_hour
        return plan.unit_usd_per_hour, plan.command.provider

    assert priced(provision(), SIM) == (1.5, "sim")
    assert priced(provision(), Quote(provider="sim", usd_per_hour=0.5)) == (0.5, "sim")
    assert priced(provision(), Quote(provider="sim", usd_per_hour=2.0)) == (2.0, "sim")
    assert priced(provision(), Quote(provider="sim", usd_per_hour=2.01)) == (2.0, None)
    assert priced(provision(), Quote(provider="sim", usd_per_hour=0.0)) == (2.0, None)
    assert priced(provision(), Quote(provider="aws", usd_per_hour=1.0)) == (2.0, None)
    # a request that names its provider takes no other provider's quote
    assert priced(provision(provider="vastai"), SIM) == (2.0, "vastai")
    assert priced(provision(max_usd_per_hour=1.0), SIM) == (1.0, None)


def test_any_model_becomes_the_pools_and_a_named_one_stays() -> None:
    small = concretize(Ledger(), provision(pool="small"), policy(), NOON, None).command
    assert isinstance(small, ProvisionRequest) and small.gpu_model == "any"
    named = concretize(Ledger(), provision(gpu_model="H100"), policy(), NOON, None).command
    assert isinstance(named, ProvisionRequest) and named.gpu_model == "H100"
    anyone = concretize(Ledger(), provision(), policy(), NOON, None).command
    assert isinstance(anyone, ProvisionRequest) and anyone.gpu_model == "H100"
