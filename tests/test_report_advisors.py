"""The brain answers "analyse the last 7 days and recommend changes" from the report, as
coordinator of the cost and performance advisors (A2A agents): by rules without a key,
with Claude (the fake Messages API) with one; every advisor's answer audited."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from contracts.events import AuditRecord
from services.a2a.client import A2AClient
from services.brain.advisors import View, cost_view, performance_view, weigh
from services.gateway.history.advice import PoolFacts
from services.gateway.history.build import History, build
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.history_helpers import week_services
from tools.report.week import simulate

FLEET = Path(sys.executable).with_name("fleet")
QUESTION = "analyse the last 7 days and recommend changes"


def week_report() -> dict[str, Any]:
    end = 20_000 * 86_400.0 + 13 * 3600.0
    w = simulate(end, days=7.0, seed=3)
    h = History(rollup=w.rollup, units=w.units, verdicts=w.verdicts, audit=w.audit, jobs=w.jobs)
    r = build(h, {"h100": PoolFacts(min_units=2)}, end - 7 * 86_400.0, end)
    return msgspec.to_builtins(r)  # type: ignore[no-any-return]


def test_each_advisor_judges_every_recommendation_from_its_angle() -> None:
    report = week_report()
    cost, perf = cost_view(report), performance_view(report)
    assert len(cost.opinions) == len(perf.opinions) == len(report["recommendations"])
    by = {o.kind: o for o in perf.opinions}
    assert by["gpu_type"].stance == "oppose" or "longer" in by["gpu_type"].why
    assert {o.kind: o.stance for o in cost.opinions}["budget"] == "caution"
    assert "$" in cost.summary and "peaks" in perf.summary


def test_the_coordinator_holds_what_performance_opposes_and_says_why() -> None:
    report = week_report()
    perf = performance_view(report)
    gpu = next(o for o in perf.opinions if o.kind == "gpu_type")
    opposed = msgspec.structs.replace(
        perf,
        opinions=[
            msgspec.structs.replace(o, stance="oppose", why="jobs miss deadlines")
            if o is gpu
            else o
            for o in perf.opinions
        ],
    )
    decisions = {d.recommendation["kind"]: d for d in weigh(report, cost_view(report), opposed)}
    assert decisions["gpu_type"].verdict == "hold"
    assert "jobs miss deadlines" in decisions["gpu_type"].why
    assert decisions["reserve_base"].verdict == "adopt"
    assert decisions["budget"].verdict == "adopt with care"  # cost cautions: it adds spend


async def ask(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(FLEET),
        "ask",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def audits(nc: Client, actor: str) -> list[AuditRecord]:
    js = nc.jetstream()
    sub = await js.subscribe(f"fleet.audit.{actor}", ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except Exception:
                break
            out.append(msgspec.json.decode(msg.data, type=AuditRecord))
    finally:
        await sub.unsubscribe()
    return out


async def test_the_rule_policy_answers_the_week_question_with_numbers(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with week_services(nats_url, nc, tmp_path, brain=True):
        code, out, err = await ask(QUESTION, "--nats", nats_url)
        assert code == 0, err
        items = re.findall(r"^\d+\. \[(adopt|adopt with care|hold)\] (.+)$", out, re.M)
        assert len(items) >= 3, out
        for _, line in items:
            assert re.search(r"Numbers: \w+ [\d,.]+", line), line
            assert "Why: cost: " in line and "performance: " in line
        assert "saves about $" in out and "no model was used" in out
        assert "cost-advisor (rules)" in out and "performance-advisor (rules)" in out
        for actor in ("cost-advisor", "performance-advisor"):
            recs = await audits(nc, actor)
            assert recs and recs[-1].action == "advise" and recs[-1].reasoning.startswith("rules")
        weighed = [a for a in await audits(nc, "brain") if a.action == "coordinate"]
        assert weighed and "performance-advisor (rules)" in weighed[-1].reasoning


async def test_an_advisor_answers_on_its_own_over_a2a(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with week_services(nats_url, nc, tmp_path, brain=True):
        client = A2AClient(nc, "performance-advisor", timeout_s=120)
        task = await client.send("advise on the last 7 days")
        data = next(p.data for a in task.artifacts or [] for p in a.parts if p.data)
        view = msgspec.convert(data, View)
        assert view.advisor == "performance-advisor" and view.opinions
        assert {o.kind for o in view.opinions} >= {"reserve_base", "gpu_type"}
        card = await client.card()
        assert card.name == "performance-advisor" and "rules" in card.description


async def test_with_a_key_claude_writes_the_advisors_views_and_weighs_them(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [
        [text("COST: reserve the two H100s first; the RTX 4090 route saves $99 a week.")],
        [text("PERF: RTX 4090 jobs take 20% longer; the reservation is safe.")],
        [text("Adopt the reservation; route to RTX 4090 only for jobs without deadlines.")],
    ]
    with FakeAnthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        async with week_services(nats_url, nc, tmp_path, brain=True):
            env = {"ANTHROPIC_API_KEY": ""}
            code, out, err = await ask(QUESTION, "--nats", nats_url, env=env)
            assert code == 0, err
            assert "Adopt the reservation" in out
            systems = [r.get("system", "") for r in fake.requests]
            assert "cost optimizer" in systems[0] and "performance optimizer" in systems[1]
            advisor_input = json.loads(fake.requests[0]["messages"][0]["content"])
            assert advisor_input["report"]["spend"]["total_usd"] > 0
            brief = json.dumps(fake.requests[2]["messages"])
            assert "COST: reserve the two H100s" in brief and "PERF: RTX 4090" in brief
            assert "Numbers:" in brief
            recs = await audits(nc, "cost-advisor")
            assert recs and recs[-1].reasoning.startswith("claude")


def test_a_small_fleets_unit_hours_are_not_rounded_to_nothing() -> None:
    """The report's own unit-hours, in the console header and the coordinator's answer:
    a quarter of a unit-hour reads 0.25, not 0; a big fleet's stays whole."""
    from rich.console import Console

    from services.brain.advisors import answer_text
    from tools.report.tables import show

    report = week_report()
    for hours, shown in ((0.25, "0.25 unit-hours"), (1234.4, "1,234 unit-hours")):
        report["spend"]["unit_hours"] = hours
        console = Console(width=200, record=True)
        show(report, console)
        assert shown in console.export_text()
        assert f"({shown}," in answer_text(report, [], [])
