"""The report's policy what-if: it replays exactly the change it recommends."""

from __future__ import annotations

from array import array

import msgspec

from services.scaler.policy import Policy
from tools.replay.traces import Trace
from tools.report.whatif import policy_advice, replay


def test_each_alternative_changes_only_the_target_and_is_priced_at_the_pools_weight() -> None:
    # Two hours of a pool's load: steady, then a step (each second's requests in flight).
    busy = array("f", [12.0] * 3600 + [30.0] * 3600)
    trace = Trace(name="rollup", arrivals=array("f", [1.0] * 7200), busy=busy, shape="stream")
    policy = Policy(lead_time_s=60.0, slo_weight=35.0, target_utilization=0.8)
    outcomes = replay(trace, policy, price=2.0)
    assert outcomes[0].label == "configured" and outcomes[0].policy == policy
    tried = []
    for o in outcomes[1:]:
        target = o.policy.target_utilization
        tried.append(target)
        # A user told "run at target_utilization X" changes that and nothing else.
        assert o.policy == msgspec.structs.replace(policy, target_utilization=target)
        assert o.label == f"target_utilization {target:g}"
        short = o.totals.under_unit_s / 3600.0 * 2.0 * 35.0
        assert o.total_usd == o.totals.cost_usd + short
    assert sorted(tried) == [0.5, 0.6, 0.7, 0.9]
    advice = policy_advice("gpu", outcomes, hours=2.0)
    if advice is not None:
        assert advice.numbers["slo_weight"] == 35.0
        assert advice.numbers["suggested_target"] in tried
