"""The cost and performance advisors' rules, and how the coordinator weighs them.

The GPU-agent guide's multi-agent pattern: a cost optimizer and a performance
optimizer each read the same report (`fleet.api.fleet_report`) from their own
angle, and a coordinator balances them. Here each advisor turns every
recommendation into an opinion (endorse, caution or oppose, with why and the
numbers), and `weigh` decides: adopt what both accept, adopt with care what the
performance advisor cautions about, hold what it opposes, and say why each
time. Pure functions over the report's JSON, so the rule mode, the A2A agents
and the tests share them; with a model the advisors add their own words on top.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.subjects import ADVISOR_AGENTS

Stance = Literal["endorse", "caution", "oppose"]
Verdict = Literal["adopt", "adopt with care", "hold"]

COST, PERFORMANCE = ADVISOR_AGENTS
ADVISORS = ADVISOR_AGENTS
"""The advisors' A2A agent names (`a2a.<name>.rpc`)."""


class Opinion(msgspec.Struct, frozen=True, kw_only=True):
    """One advisor's view of one recommendation."""

    kind: str
    pool: str | None = None
    title: str
    stance: Stance
    why: str


class View(msgspec.Struct, frozen=True, kw_only=True):
    """An advisor's answer: an opinion per recommendation and a one-paragraph summary."""

    advisor: str
    opinions: list[Opinion]
    summary: str
    by: str = "rules"
    """`rules`, or the model that wrote the summary."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the coordinator makes of one recommendation."""

    recommendation: dict[str, Any]
    verdict: Verdict
    why: str


def _hours(x: float) -> str:
    """Unit-hours: whole above 100, else to the hundredth (a quarter is not "0")."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _key(rec: dict[str, Any]) -> tuple[str, str | None, str]:
    return rec["kind"], rec.get("pool"), rec["title"]


def cost_view(report: dict[str, Any]) -> View:
    """Money first: endorse every saving by its size, be wary of what adds spend."""
    recs = report.get("recommendations", [])
    total = sum(r["saving_usd_per_week"] for r in recs) or 1.0
    out = []
    for r in recs:
        saving = r["saving_usd_per_week"]
        if saving > 0:
            stance: Stance = "endorse"
            why = f"saves {_money(saving)} a week ({saving / total:.0%} of all savings found)"
        elif r["kind"] == "budget":
            stance = "caution"
            why = "raising the budget adds spend; moving low-priority work off-peak costs nothing"
        else:
            stance = "endorse"
            why = "costs nothing to do; failures and replacements pay boot time for no work"
        out.append(
            Opinion(kind=r["kind"], pool=r.get("pool"), title=r["title"], stance=stance, why=why)
        )
    spend = report.get("spend", {})
    idle = sum(i.get("idle_usd", 0.0) for i in report.get("idle", []))
    gpu = max(spend.get("by_gpu", {}).items(), key=lambda kv: kv[1], default=("none", 0.0))
    summary = (
        f"Spend {_money(spend.get('total_usd', 0.0))} over {report.get('days', 0):g} days, "
        f"{_money(idle)} of it on idle units; {gpu[0]} is the largest line "
        f"({_money(gpu[1])}). Savings found: {_money(sum(r['saving_usd_per_week'] for r in recs))}"
        " a week."
    )
    return View(advisor=COST, opinions=out, summary=summary)


def _job_times(report: dict[str, Any]) -> dict[str, float]:
    """Mean run time of the succeeded jobs per GPU type, seconds."""
    acc: dict[str, tuple[float, int]] = {}
    for g in report.get("jobs", []):
        s, n = acc.get(g["gpu_model"], (0.0, 0))
        acc[g["gpu_model"]] = (s + g["mean_s"] * g["succeeded"], n + g["succeeded"])
    return {gpu: s / n for gpu, (s, n) in acc.items() if n}


def _performance(r: dict[str, Any], times: dict[str, float]) -> tuple[Stance, str]:
    n = r.get("numbers", {})
    kind = r["kind"]
    if kind == "policy":
        more = n.get("suggested_under_unit_s", 0.0) - n.get("current_under_unit_s", 0.0)
        if more <= 0:
            return "endorse", "the replay served the load as well (no more under-provisioning)"
        worse = more / max(n.get("current_under_unit_s", 0.0), 1.0)
        stance: Stance = "oppose" if worse > 1.0 else "caution"
        return stance, f"the replay had {more:,.0f} more under-provisioned unit-seconds"
    if kind == "idle_threshold":
        back = n.get("units_back", 0.0)
        if back <= 0:
            return "endorse", "no released unit would have been needed again"
        return (
            "caution",
            f"{back:.0f} released units would have had to come back (a lead time each)",
        )
    if kind == "gpu_type":
        cheap = r["title"].split()[1]
        dear = [g for g in times if g != cheap and g in r["title"]]
        if cheap in times and dear:
            slower = times[cheap] / times[dear[0]] - 1.0
            if slower > 1.0:
                return "oppose", f"jobs run {slower:.0%} longer on {cheap}"
            if slower > 0.1:
                return "caution", f"jobs run {slower:.0%} longer on {cheap} (mind deadlines)"
        return "endorse", "the cheaper type finished the same jobs about as fast"
    if kind == "budget":
        return "endorse", "denied and held capacity is load served late"
    if kind == "reliability":
        return "endorse", "fewer failures, fewer requests lost in flight"
    return "endorse", "capacity stays where it is"


def performance_view(report: dict[str, Any]) -> View:
    """Throughput and latency first: what each change risks for the load."""
    times = _job_times(report)
    out = []
    for r in report.get("recommendations", []):
        stance, why = _performance(r, times)
        out.append(
            Opinion(kind=r["kind"], pool=r.get("pool"), title=r["title"], stance=stance, why=why)
        )
    hours = report.get("peak_hours", [])
    budget = report.get("budget", {})
    fails = report.get("failures", {})
    summary = (
        f"Load peaks at {', '.join(f'{h:02d}:00' for h in hours) or 'no hour'} UTC; the "
        f"cost-guard denied {budget.get('denied', 0)} and held {budget.get('held', 0)} "
        f"commands; {fails.get('failed', 0)} units failed. "
        f"{sum(o.stance != 'endorse' for o in out)} of {len(out)} changes carry a risk."
    )
    return View(advisor=PERFORMANCE, opinions=out, summary=summary)


def weigh(report: dict[str, Any], cost: View | None, perf: View | None) -> list[Decision]:
    """Each recommendation with the coordinator's verdict and why, in the report's order.

    Performance can stop a saving (oppose: hold) or qualify it (caution: adopt with
    care); cost can only qualify what saves nothing. A view not given is the rules'."""
    views = {
        name: {(o.kind, o.pool, o.title): o for o in view.opinions}
        for name, view in (
            (COST, cost or cost_view(report)),
            (PERFORMANCE, perf or performance_view(report)),
        )
    }
    out = []
    for r in report.get("recommendations", []):
        c = views[COST].get(_key(r))
        p = views[PERFORMANCE].get(_key(r))
        c_stance = c.stance if c else "endorse"
        p_stance = p.stance if p else "endorse"
        if p_stance == "oppose":
            verdict: Verdict = "hold"
        elif p_stance == "caution" or c_stance != "endorse":
            verdict = "adopt with care"
        else:
            verdict = "adopt"
        why = f"cost: {c.why if c else 'no opinion'}; performance: {p.why if p else 'no opinion'}"
        out.append(Decision(recommendation=r, verdict=verdict, why=why))
    return out


def answer_text(report: dict[str, Any], decisions: list[Decision], views: list[View]) -> str:
    """The coordinator's answer: what the period was, then each change with its numbers,
    the saving, the verdict and why."""
    spend = report.get("spend", {})
    idle = sum(i.get("idle_usd", 0.0) for i in report.get("idle", []))
    hours = ", ".join(f"{h:02d}:00" for h in report.get("peak_hours", [])) or "no clear hour"
    lines = [
        f"Over the last {report.get('days', 0):g} days the fleet spent "
        f"{_money(spend.get('total_usd', 0.0))} ({_hours(spend.get('unit_hours', 0.0))} "
        f"unit-hours, {_money(idle)} on idle units); load peaks at {hours} UTC.",
    ]
    for v in views:
        lines.append(f"{v.advisor} ({v.by}): {v.summary}")
    if not decisions:
        lines.append("No change to recommend from this history.")
    for i, d in enumerate(decisions, 1):
        r = d.recommendation
        nums = ", ".join(f"{k} {v:,.4g}" for k, v in r.get("numbers", {}).items())
        saving = r["saving_usd_per_week"]
        gain = f"saves about {_money(saving)}/week" if saving > 0 else "buys performance"
        lines.append(f"{i}. [{d.verdict}] {r['title']} {gain}. Numbers: {nums}. Why: {d.why}.")
    return "\n".join(lines)
