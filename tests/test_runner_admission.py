"""A runner's admission decisions with plain values: slots, the queue, when the runner
leaves and rejoins the rpc queue group, and a tenant's session quota."""

from __future__ import annotations

import pytest

from contracts.a2a import QUOTA_EXCEEDED
from services.runner.admission import (
    Capacity,
    Load,
    QuotaFull,
    TenantIndex,
    admit_session,
    admitted,
    arrived,
    gave_up,
    membership,
    refusal,
    released,
)

CAP = Capacity(max_sessions=2, max_queue=1)


def test_requests_take_slots_then_wait_then_give_back() -> None:
    load = admitted(arrived(Load()))
    assert (load.inflight, load.waiting) == (1, 0)
    load = arrived(arrived(load))
    assert (load.inflight, load.waiting) == (1, 2)
    load = gave_up(load)  # a caller went away while waiting
    assert (load.inflight, load.waiting) == (1, 1)
    load = released(admitted(load))
    assert (load.inflight, load.waiting) == (1, 0)


def test_a_full_runner_leaves_the_group_and_rejoins_with_a_free_slot() -> None:
    full = Load(inflight=2, waiting=1)  # max_sessions + max_queue taken
    assert membership(full, CAP, joined=True, draining=False) == "leave"
    assert membership(full, CAP, joined=False, draining=False) is None
    busy = Load(inflight=2, waiting=0)  # no free slot yet: stays out
    assert membership(busy, CAP, joined=False, draining=False) is None
    room = Load(inflight=1, waiting=0)
    assert membership(room, CAP, joined=False, draining=False) == "join"
    assert membership(room, CAP, joined=True, draining=False) is None


def test_a_draining_runner_never_rejoins() -> None:
    assert membership(Load(), CAP, joined=False, draining=True) is None


def test_a_tenant_opens_sessions_up_to_its_quota() -> None:
    index = TenantIndex(tenant="acme")
    index = admit_session(index, "s1", now=100.0, idle_s=60.0, quota=2)
    index = admit_session(index, "s2", now=101.0, idle_s=60.0, quota=2)
    with pytest.raises(QuotaFull) as refused:
        admit_session(index, "s3", now=102.0, idle_s=60.0, quota=2)
    assert (refused.value.live, refused.value.quota) == (2, 2)
    # Continuing a live session is not a new one.
    again = admit_session(index, "s1", now=103.0, idle_s=60.0, quota=2)
    assert again.live == {"s1": 103.0, "s2": 101.0}


def test_idle_sessions_free_their_place() -> None:
    index = TenantIndex(tenant="acme", live={"old": 0.0, "recent": 90.0})
    index = admit_session(index, "new", now=100.0, idle_s=60.0, quota=2)
    assert set(index.live) == {"recent", "new"}


def test_the_refusal_names_the_quota_and_how_to_proceed() -> None:
    exc = QuotaFull("acme", live=3, quota=3)
    refused = refusal(exc)
    assert refused.code == QUOTA_EXCEEDED
    assert refused.data == {"tenant": "acme", "liveSessions": 3, "maxSessions": 3}
    assert "same contextId" in str(refused)
