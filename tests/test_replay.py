"""`fleet replay`: the virtual pool's totals and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tools.cli import main
from tools.replay.sim import demand_series, simulate, zero_runs
from tools.replay.traces import read_trace

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"


def test_littles_law_demand() -> None:
    assert list(demand_series([2, 4, 6], 1.0)) == [2, 4, 6]
    assert list(demand_series([2, 4, 6], 2.0)) == [2, 6, 10]
    assert list(demand_series([2, 4, 6], 1.5)) == [2, 5, 8]


def test_zero_runs_are_flagged_only_when_long() -> None:
    flags = zero_runs([1, 0, 0, 1, 0, 0, 0, 1], 3)
    assert list(flags) == [0, 0, 0, 0, 1, 1, 1, 0]


def test_sim_totals_by_hand() -> None:
    # 10 in flight for 100 s, 4 per unit: 2.5 units needed. One unit at start,
    # the policy asks for 3 at once; they are ready after 10 s.
    tot, series = simulate(
        "fixed",
        [10.0] * 100,
        [10.0] * 100,
        lambda m, now: 3,
        tick_s=5,
        lead_s=10,
        unit_capacity=4.0,
        initial_units=1,
        price_usd_per_hour=2.0,
        record=True,
    )
    assert math.isclose(tot.under_unit_s, 10 * 1.5)
    assert tot.under_seconds == 10
    assert math.isclose(tot.unit_hours, 300 / 3600)
    assert math.isclose(tot.cost_usd, 600 / 3600)
    assert tot.actions == 1
    assert series is not None and series.ready[9] == 1 and series.ready[10] == 3


def synthetic_trace(path: Path) -> None:
    counts = [5] * 600 + [40] * 300 + [0] * 200 + [15] * 600
    path.write_text("\n".join(str(c) for c in counts) + "\n")


def test_cli_totals_match_the_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, out = tmp_path / "syn.txt", tmp_path / "out.json"
    synthetic_trace(trace)
    args = [str(trace), "--unit-capacity", "4", "--lead-time", "30", "--price", "2.5"]
    assert main(["replay", *args, "--json", str(out)]) == 0
    assert "ours" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert set(doc["policies"]) == {"ours", "hpa", "kpa"}
    for entry in doc["policies"].values():
        s, tot = entry["series"], entry["totals"]
        under = [max(0.0, d / 4 - r) for d, r in zip(s["demand"], s["ready"], strict=True)]
        assert math.isclose(tot["under_unit_s"], sum(under), rel_tol=1e-9, abs_tol=1e-9)
        assert tot["under_seconds"] == sum(1 for u in under if u > 0)
        assert math.isclose(tot["unit_hours"], sum(s["desired"]) / 3600)
        assert math.isclose(tot["cost_usd"], 2.5 * sum(s["desired"]) / 3600)
        assert len(s["t"]) == 1700  # the 200 s zero run is real silence (< 600 s)
    # A step to 8x the load: every policy is short while units boot.
    assert all(doc["policies"][p]["totals"]["under_unit_s"] > 0 for p in doc["policies"])


def test_every_policy_starts_warm_for_the_first_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A window of a running system: light for 10 s, then 30 in flight. Each
    # policy starts with what its own sizing gives the first minute's peak
    # (30 / (4 x 0.8) -> 10 units for ours at its default target, 30 / (4 x 0.7)
    # -> 11 for the baselines at theirs), so none is short while units would boot.
    trace, out = tmp_path / "warm.txt", tmp_path / "out.json"
    trace.write_text("\n".join(["1"] * 10 + ["30"] * 1000) + "\n")
    args = ["replay", str(trace), "--unit-capacity", "4", "--lead-time", "120"]
    assert main([*args, "--json", str(out)]) == 0
    capsys.readouterr()
    policies = json.loads(out.read_text())["policies"]
    assert {p: e["series"]["ready"][0] for p, e in policies.items()} == {
        "ours": 10,
        "hpa": 11,
        "kpa": 11,
    }
    assert all(e["totals"]["under_unit_s"] == 0 for e in policies.values())


def test_cli_window_and_skipped_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, out = tmp_path / "syn.txt", tmp_path / "out.json"
    synthetic_trace(trace)
    args = ["replay", str(trace), "--policy", "kpa", "--skip-zero-runs", "100"]
    assert main([*args, "--start", "500", "--duration", "700", "--json", str(out)]) == 0
    s = json.loads(out.read_text())["policies"]["kpa"]["series"]
    assert s["t"][0] == 500 and len(s["t"]) == 500  # 200 s of gap not scored


def test_cli_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    trace = tmp_path / "syn.txt"
    synthetic_trace(trace)
    assert main(["replay", str(trace), "--unit-capacity", "0"]) == 2
    assert main(["replay", str(trace), "--start", "99999"]) == 2


def _acceptance(
    path: Path, knobs: tuple[float, ...], beats: tuple[str, ...] = ("hpa", "kpa"), **kw: object
) -> None:
    """At equal spend, ours serves the load better than each baseline named in
    `beats`: its frontier, read at the baseline's default unit-hours, has fewer
    under-provisioned unit-seconds (ADR 0008 gives the ratios measured)."""
    from services.scaler.policy import Policy
    from tools.replay.frontier import Point, headlines
    from tools.replay.sweep import plan, run_jobs
    from tools.replay.workload import prepare

    policy = Policy(target_utilization=0.7, unit_capacity=8.0, lead_time_s=120.0, max=1000)
    work = prepare(read_trace(path), service_s=1.0, **kw)  # type: ignore[arg-type]
    # Ours at the knobs that bracket the baselines' default spend (not all
    # seven: the test must stay quick); the baselines at their defaults only.
    jobs = plan(["ours"], policy, sweep=True, record=False, knobs=knobs)
    jobs += plan(["hpa", "kpa"], policy, sweep=False, record=False)
    out = run_jobs(work, jobs, price=1.0)
    defaults = {
        n: Point(0.7, t.unit_hours, t.under_unit_s, t.actions)
        for n in ("hpa", "kpa")
        if (t := out.defaults[n].totals)
    }
    for head in headlines(out.points["ours"], defaults):
        if head.baseline in beats:
            assert head.under_ratio is not None and head.under_ratio < 1.0, head


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces absent")
def test_azure_trace_beats_both_baselines() -> None:
    _acceptance(TRACES / "azure_llm_conv_2023-11-16.csv", (0.6, 0.7, 0.8, 0.9, 0.95))


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces absent")
def test_twitter_two_days_beat_the_hpa() -> None:
    # Against the KPA ours is level at its spend (1.08x on these two days, ADR
    # 0008): the trace's shortfall is bursts shorter than the lead time, which
    # no policy that reacts can buy in time.
    _acceptance(
        TRACES / "twitter_2021_per_second.tbz2",
        (0.7, 0.8, 0.9, 0.95),
        beats=("hpa",),
        duration_s=2 * 86_400,
    )


@pytest.mark.slow
@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces absent")
def test_twitter_whole_trace_beats_the_hpa() -> None:
    _acceptance(TRACES / "twitter_2021_per_second.tbz2", (0.6, 0.7, 0.8, 0.9, 0.95), beats=("hpa",))
