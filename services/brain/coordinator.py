"""The brain as coordinator of the two advisors: "analyse the last 7 days and recommend
changes".

It reads the report (the `report` tool, `fleet.api.fleet_report`), asks the
cost and the performance advisor (A2A agents) for their views of it, weighs
them (services.brain.advisors.weigh) and answers with each recommendation's
numbers, its saving, the verdict and why. Without a model that is the answer;
with one, the same material is the brief Claude starts from. The weighing is
audited on `fleet.audit.brain`.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from services.brain.advisoragent import Consult, days_in
from services.brain.advisors import (
    ADVISORS,
    COST,
    Decision,
    View,
    answer_text,
    cost_view,
    performance_view,
    weigh,
)


class Tools(Protocol):
    """What the rule policy and the coordinator call tools through (the Toolbox)."""

    async def call(
        self, name: str, args: Any, reasoning: str = ""
    ) -> tuple[dict[str, Any], bool]: ...

    async def audit(
        self, action: str, args: Any, reasoning: str, result: Any, impact: float
    ) -> None: ...


async def views_of(report: dict[str, Any], consult: Consult | None) -> list[View]:
    """Both advisors' views; an advisor that does not answer is replaced by its rules,
    and the view says so."""
    out = []
    for name in ADVISORS:
        view = await consult(name, report) if consult is not None else None
        if view is None:
            rules = cost_view(report) if name == COST else performance_view(report)
            where = "the advisor did not answer" if consult is not None else "in the brain"
            view = msgspec.structs.replace(rules, by=f"rules, {where}")
        out.append(view)
    return out


async def advise(
    text: str, tools: Tools, consult: Consult | None, why: str
) -> tuple[dict[str, Any], list[View], list[Decision]] | str:
    """The report, both views and the decisions; or why there is no report."""
    report, failed = await tools.call("report", {"days": days_in(text)}, why)
    if failed:
        err = report.get("error")
        return str(err.get("message") if isinstance(err, dict) else err)
    views = await views_of(report, consult)
    decisions = weigh(report, views[0], views[1])
    verdicts = {d.verdict: 0 for d in decisions}
    for d in decisions:
        verdicts[d.verdict] += 1
    await tools.audit(
        "coordinate",
        {"days": report.get("days")},
        f"{why}; weighed {', '.join(v.advisor + ' (' + v.by + ')' for v in views)}",
        {"decisions": [(d.recommendation["title"], d.verdict, d.why) for d in decisions]},
        0.0,
    )
    return report, views, decisions


async def answer(
    text: str, tools: Tools, consult: Consult | None, why: str, no_model: str
) -> tuple[str, Any]:
    """The rule mode's answer: the period, each change with its numbers, saving, verdict
    and why, and that no model was used."""
    got = await advise(text, tools, consult, why)
    if isinstance(got, str):
        return f"The report is not available: {got}. {no_model}", None
    report, views, decisions = got
    data = {
        "recommendations": [
            {**d.recommendation, "verdict": d.verdict, "why": d.why} for d in decisions
        ],
        "advisors": [msgspec.to_builtins(v) for v in views],
        "spend": report.get("spend"),
        "days": report.get("days"),
    }
    return f"{answer_text(report, decisions, views)}\n{no_model}", data


def brief(report: dict[str, Any], views: list[View], decisions: list[Decision]) -> str:
    """What the model is told before it answers: the rules' weighing of both advisors."""
    return (
        "\n\nThe report of the period and the advisors' views (the cost optimizer and the "
        "performance optimizer), weighed by rules; weigh both yourself, state why, and cite "
        "the numbers:\n" + answer_text(report, decisions, views)
    )
