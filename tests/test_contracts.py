"""The wire contract: every message round-trips, bad values are refused, subjects are
built and parsed in one place, and the generated documents are valid."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from contracts import subjects
from contracts.commands import (
    DecideReply,
    DecideRequest,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
    Verdict,
    command_decoder,
)
from contracts.events import Alert, AuditRecord, DeadLetter, UnitEvent
from contracts.schema import json_schema
from contracts.streams import ALL_STREAMS, stream_for
from contracts.telemetry import PoolMetrics, UnitTelemetry

REPO = Path(__file__).resolve().parents[1]

proposal = ScaleProposal(id="p-1", pool="h100", current=2, desired=5, mode="panic", reason="burst")
provision = ProvisionRequest(id="r-1", pool="h100", requester="brain", count=2, gpu_model="H100")
release = ReleaseRequest(id="r-2", pool="h100", requester="op", unit="u-1")
SAMPLES: list[Any] = [
    UnitTelemetry(pool="h100", unit="u-1", inflight=3, capacity=8, utilization=0.4),
    PoolMetrics(pool="h100", units_ready=2, inflight=5.5, utilization=0.3, arrival_rate=2.5),
    proposal,
    provision,
    release,
    Verdict(id="p-1", decision="approved", request=proposal, command=provision, usd_per_hour=7),
    DecideRequest(approve=True, operator="alice"),
    DecideReply(ok=True, id="r-1", decision="approved"),
    UnitEvent(pool="h100", unit="u-1", state="ready", provider="sim", usd_per_hour=2.5),
    Alert(kind="unit_failed", message="no heartbeat for 10 s", pool="h100", unit="u-1"),
    AuditRecord(actor="costguard", action="approve", reasoning="within budget", refs={"r": "1"}),
    DeadLetter(subject="fleet.telemetry.a.b", reason="bad", service="watcher", size=3),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_with_version_and_time(msg: Any) -> None:
    wire = msgspec.json.encode(msg)
    doc = json.loads(wire)
    assert doc["v"] == 1 and isinstance(doc["ts"], float)
    assert msgspec.json.decode(wire, type=type(msg)) == msg


def test_verdict_carries_the_original_command_whatever_its_kind() -> None:
    for original in (proposal, provision, release):
        verdict = Verdict(id=original.id, decision="denied", request=original, reason="no")
        back = msgspec.json.decode(msgspec.json.encode(verdict), type=Verdict)
        assert back.request == original
    assert command_decoder().decode(msgspec.json.encode(release)) == release


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    wire = b'{"pool":"p","unit":"u","inflight":1,"added_in_v2":{"x":1}}'
    assert msgspec.json.decode(wire, type=UnitTelemetry).inflight == 1


@pytest.mark.parametrize(
    "wire, field",
    [
        (b'{"pool":"p","unit":"u","utilization":1.5}', "utilization"),
        (b'{"pool":"p","unit":"u","inflight":-1}', "inflight"),
        (b'{"pool":"p","unit":"u","inflight":1e999}', "inflight"),
        (b'{"pool":"p.q","unit":"u"}', "pool"),
        (b'{"pool":"p","unit":"u","healthy":"yes"}', "healthy"),
    ],
)
def test_out_of_range_and_mistyped_values_are_refused(wire: bytes, field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.json.decode(wire, type=UnitTelemetry)


def test_commands_refuse_negative_and_absurd_counts() -> None:
    dec = command_decoder()
    for count in (-1, 0, 10**9):
        bad = {"kind": "provisionrequest", "id": "x", "pool": "p", "requester": "r", "count": count}
        with pytest.raises(msgspec.ValidationError, match="count"):
            dec.decode(json.dumps(bad))
    with pytest.raises(msgspec.DecodeError):
        dec.decode(
            b'{"kind":"provisionrequest","id":"x","pool":"p","requester":"r","max_usd_per_hour":NaN}'
        )


def test_subjects_are_built_and_parsed_in_one_place() -> None:
    assert subjects.telemetry("h100", "u-1") == "fleet.telemetry.h100.u-1"
    assert subjects.parse_telemetry("fleet.telemetry.h100.u-1") == ("h100", "u-1")
    assert subjects.parse_unit(subjects.unit("p", "u")) == ("p", "u")
    assert subjects.parse_dead(subjects.dead("fleet.unit.p.u")) == "fleet.unit.p.u"
    assert subjects.a2a_rpc(subjects.hosted_agent("assistant")) == "a2a.agents.assistant.rpc"
    for bad in ("", "a.b", "a b", "a>", "*"):
        with pytest.raises(subjects.SubjectError):
            subjects.metrics(bad)


def test_every_stream_subject_lands_in_exactly_one_stream() -> None:
    assert stream_for("fleet.metrics.h100").name == "FLEET_METRICS"  # type: ignore[union-attr]
    assert stream_for("fleet.budget.approved").name == "FLEET_CMDS"  # type: ignore[union-attr]
    assert stream_for("fleet.unit.p.u").name == "FLEET_EVENTS"  # type: ignore[union-attr]
    assert stream_for("fleet.dead.fleet.unit.p.u").name == "FLEET_DEAD"  # type: ignore[union-attr]
    assert stream_for("fleet.telemetry.p.u") is None
    names = [s.name for s in ALL_STREAMS]
    assert len(names) == len(set(names))
    for spec in ALL_STREAMS:
        assert spec.max_age_s > 0 and spec.duplicate_window_s > 0


def test_json_schema_describes_every_message_with_its_constraints() -> None:
    doc = json_schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    tele = doc["$defs"]["UnitTelemetry"]["properties"]
    assert tele["utilization"]["maximum"] == 1 and tele["inflight"]["minimum"] == 0
    validator = jsonschema.Draft202012Validator(
        {"$defs": doc["$defs"], "$ref": "#/$defs/UnitTelemetry"}
    )
    assert validator.is_valid({"pool": "p", "unit": "u"})
    assert not validator.is_valid({"pool": "p", "unit": "u", "utilization": 2})


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tools", "contracts", "asyncapi"],
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    doc = json.loads(out.stdout)
    schema = json.loads((REPO / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    assert errors == []
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["telemetry"]["address"] == "fleet.telemetry.{pool}.{unit}"
    assert "UnitTelemetry" in doc["components"]["schemas"]
    assert not math.isnan(
        doc["components"]["schemas"]["UnitTelemetry"]["properties"]["utilization"]["maximum"]
    )
