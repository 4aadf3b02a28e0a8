"""Subjects at their edges: what a permission pattern covers, and errors that name the
field that was wrong, so a bad pool or unit name is fixed at the first try."""

from __future__ import annotations

import pytest

from contracts import subjects
from contracts.subjects import SubjectError, covers


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("fleet.unit.p.u", "fleet.unit.p.u", True),
        ("fleet.unit.*.u", "fleet.unit.p.u", True),  # `*` is any one token
        ("fleet.unit.*", "fleet.unit.p.u", False),  # ... and only one
        ("fleet.>", "fleet.unit.p.u", True),  # `>` is one token or more
        ("fleet.unit.>", "fleet.unit", False),  # ... never none
        ("fleet.unit.>", "fleet.unit.p", True),
        ("fleet.unit.>", "fleet.unit.>", True),
        ("fleet.unit.*", "fleet.unit.>", False),  # one token does not cover "any number"
        ("fleet.unit.*.*", "fleet.unit.*.u", True),
        ("fleet.unit.p", "fleet.unit.*", False),
        ("fleet.unit.p.u", "fleet.unit.p", False),  # a longer pattern needs more tokens
        ("fleet.unit.p", "fleet.unit.p.u", False),
        ("fleet.unit.p", "fleet.units.p", False),
    ],
)
def test_what_a_pattern_covers(pattern: str, subject: str, expected: bool) -> None:
    assert covers(pattern, subject) is expected


@pytest.mark.parametrize(
    ("build", "field", "bad"),
    [
        (lambda v: subjects.telemetry(v, "u1"), "pool", "gpu pool"),
        (lambda v: subjects.telemetry("gpu", v), "unit", "u 1"),
        (lambda v: subjects.metrics(v), "pool", "h100.x"),
        (lambda v: subjects.scale_proposed(v), "pool", "*"),
        (lambda v: subjects.unit(v, "u1"), "pool", ""),
        (lambda v: subjects.unit("gpu", v), "unit", ">"),
        (lambda v: subjects.unit_ping(v), "unit", "a b"),
        (lambda v: subjects.audit(v), "actor", "brain!"),
        (lambda v: subjects.api(f"units.{v}"), "api operation", "li st"),
        (lambda v: subjects.a2a_rpc(f"agents.{v}"), "agent name", "my agent"),
        (lambda v: subjects.a2a_task("fleet", v), "task id", "t 1"),
        (lambda v: subjects.a2a_cancel("fleet", v), "task id", "t*"),
        (lambda v: subjects.hosted_agent(v), "agent name", "a.b"),
        (lambda v: subjects.agent_pool(v), "agent name", "x" * 129),
    ],
)
def test_a_bad_token_is_refused_with_the_field_and_the_rule(
    build: object, field: str, bad: str
) -> None:
    with pytest.raises(SubjectError) as err:
        build(bad)  # type: ignore[operator]
    assert str(err.value) == (
        f"{field} {bad!r} is not a valid subject token: use 1-128 of A-Z a-z 0-9 _ -"
    )


def test_tokens_of_1_and_128_characters_are_fine() -> None:
    assert subjects.metrics("a") == "fleet.metrics.a"
    assert subjects.metrics("a" * 128) == "fleet.metrics." + "a" * 128
    assert subjects.token("Ab_0-9") == "Ab_0-9"


def test_every_builder_puts_its_tokens_in_place() -> None:
    assert subjects.telemetry("gpu", "u1") == "fleet.telemetry.gpu.u1"
    assert subjects.metrics("gpu") == "fleet.metrics.gpu"
    assert subjects.scale_proposed("gpu") == "fleet.scale.proposed.gpu"
    assert subjects.budget("held") == "fleet.budget.held"
    assert subjects.budget_decide("req-1:2") == "fleet.budget.decide.req-1:2"
    assert subjects.unit("gpu", "u1") == "fleet.unit.gpu.u1"
    assert subjects.unit_ping("u1") == "fleet.ping.u1"
    assert subjects.audit("brain") == "fleet.audit.brain"
    assert subjects.alert("critical") == "fleet.alert.critical"
    assert subjects.dead("fleet.unit.gpu.u1") == "fleet.dead.fleet.unit.gpu.u1"
    assert subjects.api("units.list") == "fleet.api.units.list"
    assert subjects.a2a_rpc("agents.assistant") == "a2a.agents.assistant.rpc"
    assert subjects.a2a_card("fleet") == "a2a.fleet.card"
    assert subjects.a2a_task("fleet", "t1") == "a2a.fleet.tasks.t1"
    assert subjects.a2a_cancel("fleet", "t1") == "a2a.fleet.cancel.t1"
    assert subjects.a2a_cancel_all("fleet") == "a2a.fleet.cancel.*"
    assert subjects.hosted_agent("assistant") == "agents.assistant"
    assert subjects.agent_pool("assistant") == "agents-assistant"


def test_a_request_id_that_cannot_be_a_subject_is_refused() -> None:
    with pytest.raises(SubjectError, match=r"^request id 'a b' cannot be used in a subject$"):
        subjects.budget_decide("a b")


def test_parsing_names_what_was_expected() -> None:
    assert subjects.parse_metrics("fleet.metrics.gpu") == "gpu"
    assert subjects.parse_scale_proposed("fleet.scale.proposed.gpu") == "gpu"
    assert subjects.parse_budget_decide("fleet.budget.decide.r1") == "r1"
    assert subjects.parse_unit("fleet.unit.gpu.u1") == ("gpu", "u1")
    with pytest.raises(SubjectError, match=r"^'fleet.unit.gpu' is not a dead-letter subject$"):
        subjects.parse_dead("fleet.unit.gpu")
    with pytest.raises(
        SubjectError, match=r"^'fleet.units.gpu' does not start with 'fleet.metrics.'$"
    ):
        subjects.parse_metrics("fleet.units.gpu")
    with pytest.raises(
        SubjectError, match=r"^'fleet.metric.gpu.u1' does not start with 'fleet.unit.'$"
    ):
        subjects.parse_unit("fleet.metric.gpu.u1")
    with pytest.raises(
        SubjectError, match=r"^'fleet.unit.gpu' should be fleet.unit.<pool>.<unit>$"
    ):
        subjects.parse_unit("fleet.unit.gpu")
    with pytest.raises(SubjectError, match=r"^pool 'g p' is not"):
        subjects.parse_unit("fleet.unit.g p.u1")
    with pytest.raises(SubjectError, match=r"^unit 'u 1' is not"):
        subjects.parse_telemetry("fleet.telemetry.gpu.u 1")
    with pytest.raises(SubjectError, match=r"^token 'a b' is not"):
        subjects.parse_metrics("fleet.metrics.a b")
