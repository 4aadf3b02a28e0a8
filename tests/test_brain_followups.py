"""Follow-up checks the model schedules: stored in a KV bucket, run by the brain as a
task of its own when due, once."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client

from contracts.api.replies import Followup, FollowupsReply
from services.a2a.client import A2AClient
from services.brain.followups import TENANT, due
from tests.test_brain import start_brain


def test_due_follow_ups_are_the_ones_whose_time_has_come_oldest_first() -> None:
    a = Followup(id="a", check="x", due_ts=100.0)
    b = Followup(id="b", check="y", due_ts=50.0)
    c = Followup(id="c", check="z", due_ts=200.0)
    assert [f.id for f in due([a, b, c], 150.0)] == ["b", "a"]
    assert due([c], 150.0) == []


async def test_a_scheduled_follow_up_is_stored_then_runs_as_a_brain_task_once(
    nats_url: str, nc: Client, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    tasks = await nc.subscribe("a2a.fleet.tasks.>")
    brain = await start_brain(nats_url, tmp_path, followup_check_s=0.2)  # type: ignore[arg-type]
    try:
        body = {"check": "is the image batch on schedule?", "after_minutes": 0.02}
        reply = await nc.request("fleet.api.followup.schedule", msgspec.json.encode(body), 5)
        [stored] = msgspec.json.decode(reply.data, type=FollowupsReply).followups
        listed = await nc.request("fleet.api.followup.list", b"{}", 5)
        waiting = msgspec.json.decode(listed.data, type=FollowupsReply).followups
        assert [f.id for f in waiting] == [stored.id]

        first = await tasks.next_msg(timeout=10)  # the follow-up's task starts
        task_id = first.subject.rsplit(".", 1)[-1]
        task = await A2AClient(nc, "fleet", tenant=TENANT, timeout_s=10).get(task_id)
        asked = " ".join(p.text or "" for m in task.history for p in m.parts)
        assert "image batch on schedule" in asked
        listed = await nc.request("fleet.api.followup.list", b"{}", 5)
        assert msgspec.json.decode(listed.data, type=FollowupsReply).followups == []
        assert brain.metrics.counts["followups_run"] == 1

        bad = await nc.request("fleet.api.followup.schedule", b'{"check": "x", "after_mins": 1}', 5)
        assert b"error" in bad.data
    finally:
        await tasks.unsubscribe()
        await brain.stop()
