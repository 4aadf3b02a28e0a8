"""The report builder over a simulated week: spend as the ledger accrues it, load by hour
and weekday, jobs per GPU type, and recommendations with their numbers."""

from __future__ import annotations

import pytest

from contracts.events import UnitEvent
from contracts.telemetry import PoolMinute
from services.costguard.ledger import DAY_S, Ledger, apply_unit_event, spent_today
from services.gateway.history.advice import PoolFacts, idle_threshold
from services.gateway.history.build import History, build
from services.gateway.history.load import excess_runs
from services.gateway.history.spend import intervals, spend
from tests.history_helpers import ledger_by_day
from tools.report.week import simulate

END = 20_000 * DAY_S + 13 * 3600.0  # a Thursday, 13:00 UTC
WEEK = simulate(END, days=7.0, seed=3)
FACTS = {"h100": PoolFacts(min_units=2)}


def report(**kw: object) -> object:
    history = History(
        rollup=WEEK.rollup,
        units=WEEK.units,
        verdicts=WEEK.verdicts,
        audit=WEEK.audit,
        jobs=WEEK.jobs,
    )
    return build(history, FACTS, END - 7 * DAY_S, END, **kw)  # type: ignore[arg-type]


def test_spend_equals_what_the_ledger_accrued_day_by_day_within_a_cent() -> None:
    r = report()
    ledger = ledger_by_day(WEEK.units, END)
    assert set(r.spend.by_day) == set(ledger)  # type: ignore[attr-defined]
    for day, usd in ledger.items():
        assert r.spend.by_day[day] == pytest.approx(usd, abs=0.01), day  # type: ignore[attr-defined]
    assert r.spend.total_usd == pytest.approx(sum(ledger.values()), abs=0.01)  # type: ignore[attr-defined]
    by = r.spend  # type: ignore[attr-defined]
    for part in (by.by_gpu, by.by_provider, by.by_pool):
        assert sum(part.values()) == pytest.approx(by.total_usd, abs=0.01)
    assert set(by.by_gpu) == {"H100", "A100-80GB", "RTX4090"}
    assert set(by.by_provider) == {"sim", "vastai"}


def test_a_price_change_and_events_after_the_end_follow_the_ledger() -> None:
    t = 1000.0 * DAY_S
    events = [
        UnitEvent(ts=t, pool="p", unit="u", state="ready", usd_per_hour=2.0),
        UnitEvent(ts=t + 1800, pool="p", unit="u", state="ready", usd_per_hour=4.0),
        UnitEvent(ts=t + 3600, pool="p", unit="u", state="terminated", usd_per_hour=4.0),
        UnitEvent(ts=t + 3700, pool="p", unit="u", state="ready", usd_per_hour=9.0),  # late
        UnitEvent(ts=t + 600, pool="p", unit="v", state="booting", usd_per_hour=1.0),
        UnitEvent(ts=t - 7200, pool="q", unit="w", state="ready", usd_per_hour=3.0),  # before
    ]
    money = spend(intervals(events, t + 7200), t, t + 7200)
    assert money["total_usd"] == pytest.approx(1.0 + 2.0 + 6600 / 3600 + 2 * 3.0)
    assert money["by_pool"] == {"q": pytest.approx(6.0), "p": pytest.approx(3.0 + 6600 / 3600)}
    ledger = Ledger()
    for e in sorted(events, key=lambda e: e.ts):
        ledger = apply_unit_event(ledger, e, t + 7200)
    assert money["total_usd"] == pytest.approx(spent_today(ledger, t + 7200))


def test_load_peaks_in_the_afternoon_and_is_lower_at_weekends() -> None:
    r = report()
    assert r.peak_hours[0] in (14, 15, 16)  # type: ignore[attr-defined]
    hours = {h.slot: h for h in r.load_by_hour}  # type: ignore[attr-defined]
    assert hours["15"].demand > 3 * hours["04"].demand
    days = {d.slot: d.demand for d in r.load_by_weekday}  # type: ignore[attr-defined]
    assert days["Sat"] < 0.75 * days["Wed"] and days["Sun"] < 0.75 * days["Tue"]


def test_jobs_are_costed_per_gpu_type_and_model() -> None:
    r = report()
    groups = {(g.gpu_model, g.model): g for g in r.jobs}  # type: ignore[attr-defined]
    a100, rtx = groups[("A100-80GB", "sdxl")], groups[("RTX4090", "sdxl")]
    assert a100.mean_s == pytest.approx(1000, rel=0.05) and rtx.mean_s == pytest.approx(
        1200, rel=0.05
    )
    assert a100.mean_cost_usd == pytest.approx(1000 * 1.6 / 3600, rel=0.05)
    assert rtx.mean_cost_usd < a100.mean_cost_usd / 2


def test_budget_denials_failures_and_idle_money_are_counted() -> None:
    r = report()
    assert r.budget.denied + r.budget.held == len(WEEK.verdicts) > 0  # type: ignore[attr-defined]
    fails = sum(1 for e in WEEK.units if e.state == "failed")
    assert r.failures.failed == fails > 0 and r.failures.replacements == fails  # type: ignore[attr-defined]
    assert r.failures.by_provider == {"vastai": fails}  # type: ignore[attr-defined]
    idle = {i.pool: i for i in r.idle}  # type: ignore[attr-defined]
    assert 0 < idle["h100"].idle_unit_hours < idle["h100"].unit_hours
    assert idle["h100"].idle_usd == pytest.approx(idle["h100"].idle_unit_hours * 2.8, rel=0.01)
    assert idle["h100"].base_units == 2


def test_recommendations_carry_their_numbers_and_savings() -> None:
    r = report()
    recs = {(x.kind, x.pool): x for x in r.recommendations}  # type: ignore[attr-defined]
    base = recs[("reserve_base", "h100")]
    assert base.numbers["base_units"] == 2 and base.numbers["usd_per_unit_hour"] == 2.8
    assert base.saving_usd_per_week == pytest.approx(2 * 2.8 * 168 * 0.3, abs=0.01)
    gpu = recs[("gpu_type", None)]
    assert "RTX4090" in gpu.title and gpu.saving_usd_per_week > 0
    assert gpu.numbers["cheap_usd_per_job"] < gpu.numbers["dear_usd_per_job"]
    assert ("budget", None) in recs and ("reliability", None) in recs
    assert "vastai" in recs[("reliability", None)].detail
    savings = [x.saving_usd_per_week for x in r.recommendations]  # type: ignore[attr-defined]
    assert savings == sorted(savings, reverse=True)
    assert all(x.numbers for x in r.recommendations)  # type: ignore[attr-defined]


def test_a_report_of_one_pool_leaves_the_others_out() -> None:
    r = report(pool="a100")
    assert r.pools == ["a100"] and set(r.spend.by_pool) == {"a100"}  # type: ignore[attr-defined]
    assert r.budget.denied == 0 and r.failures.failed == 0  # type: ignore[attr-defined]


def test_an_empty_history_is_an_empty_report_not_an_error() -> None:
    r = build(History(), {}, END - DAY_S, END)
    assert r.spend.total_usd == 0 and r.recommendations == [] and r.pools == []
    assert all(h.minutes == 0 for h in r.load_by_hour)


def minute(ts: float, ready: int, idle: int) -> PoolMinute:
    return PoolMinute(
        ts=ts, pool="p", units_ready=ready, units_ready_min=ready, units_idle_min=idle
    )


def test_idle_stretches_are_counted_per_idle_unit_above_the_pool_minimum() -> None:
    t = 1_000_020.0 * 60
    ms = [minute(t + 60 * i, 4, idle) for i, idle in enumerate([0, 2, 2, 1, 0, 3])]
    assert sorted(excess_runs(ms, floor_units=0)) == [1, 1, 1, 2, 3]
    assert sorted(excess_runs(ms, floor_units=3)) == [1, 3]  # never below min
    gap = [minute(t, 4, 1), minute(t + 60, 4, 1), minute(t + 600, 4, 1)]
    assert sorted(excess_runs(gap, floor_units=0)) == [1, 2]  # a gap ends a stretch


def test_the_idle_threshold_pays_for_the_units_that_come_back() -> None:
    facts = PoolFacts(idle_cleanup_s=1800, lead_time_s=120, slo_weight=20)
    rec = idle_threshold("p", [100] * 10, facts, price=1.0, days=7.0)
    assert rec is not None and rec.numbers["suggested_min"] == 5
    # net at 5 min: 10 x (95/60 - 2/3) h; at 30 min: 10 x (70/60 - 2/3) h
    assert rec.saving_usd_per_week == pytest.approx(10 * 25 / 60, abs=0.01)
    assert rec.numbers["units_back"] == 10
    # 40-minute stretches: releasing at 30 min costs more lead time than it saves
    raise_it = idle_threshold("p", [40] * 10, facts, price=1.0, days=7.0)
    assert raise_it is not None and raise_it.numbers["suggested_min"] >= 40
    assert raise_it.saving_usd_per_week == pytest.approx(10 * (2 / 3 - 10 / 60), abs=0.01)
    assert idle_threshold("p", [40] * 10, PoolFacts(idle_cleanup_s=2700), 1.0, 7.0) is None


def test_a_rollup_shorter_than_the_period_says_how_much_it_covers() -> None:
    """A fleet 13 minutes old asked for a day: the note says the last 0.2 h are covered."""
    recent = [minute(END - 780 + 60 * i, ready=2, idle=0) for i in range(13)]
    r = build(History(rollup=recent), {}, END - DAY_S, END)
    assert any("covers only the last 0.2 h of the 24 h period" in n for n in r.notes), r.notes
