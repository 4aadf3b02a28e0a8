"""Rule mode (no API key) is safe: every guide text and paraphrase of
tests/data/rule_intents.json is sent to agent `fleet` over A2A, and nothing is
provisioned or released (no command on FLEET_CMDS) unless the request was an
explicit command; the agent card lists only what this mode can do."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.a2a import TaskState
from contracts.commands import ProvisionRequest, ReleaseRequest
from services.a2a.client import A2AClient
from services.brain.rulemode import SKILLS_WITHOUT_MODEL
from tests.fakes.fleet_api import FakeFleetOwners
from tests.test_brain import fleet, start_brain  # noqa: F401  (the fixture)
from tests.test_brain_intents import ALL


async def test_nothing_is_provisioned_or_released_unless_the_request_was_explicit(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    fleet: FakeFleetOwners,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    fleet.add_unit("u-vast", "vastai", "12345")
    brain = await start_brain(nats_url, tmp_path)
    try:
        client = A2AClient(nc, "fleet", tenant="ops", timeout_s=20)
        card = await client.card()
        assert {s.id for s in card.skills} <= SKILLS_WITHOUT_MODEL
        assert all("Claude" not in s.description for s in card.skills)
        for case in ALL:
            before = len(fleet.requests)
            task = await client.send(case["text"])
            assert task.status.state == TaskState.COMPLETED, case["text"]
            said = task.status.message.parts[0].text or ""  # type: ignore[union-attr]
            assert "no model was used" in said
            sent = fleet.requests[before:]
            if not case["explicit"]:
                assert sent == [], (case["text"], sent)
                continue
            # An explicit command does exactly what it says, once; the stand-in market has
            # no vastai offers, so a vastai provision is refused before it costs anything.
            if case["args"].get("provider") == "vastai" and case["intent"] == "provision":
                assert sent == [] and "no offer price is known" in said, said
                continue
            if case["intent"] == "provision":
                [p] = sent
                assert isinstance(p, ProvisionRequest) and p.pin
                assert (p.gpu_model, p.count) == (case["args"]["gpu_model"], case["args"]["count"])
                assert p.duration_s == case["args"]["duration"]
            elif case["intent"] == "destroy":
                assert [(type(r), r.unit) for r in sent] == [(ReleaseRequest, "u-vast")]  # type: ignore[union-attr]
            else:
                assert all(isinstance(r, ReleaseRequest) and r.unit == "u-idle" for r in sent)
        explicit = [c["text"] for c in ALL if c["explicit"]]
        assert len(explicit) == 5  # two provisions, one destroy, two cleanups
    finally:
        await brain.stop()
