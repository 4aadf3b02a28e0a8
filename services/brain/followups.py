"""Scheduled follow-up checks, kept in the KV bucket `fleet_followups` (FOLLOWUPS).

A follow-up is a check in words ("is the batch on schedule?") that the brain
runs as a task of its own once it is due. The bucket, not the process, holds
them, so a restarted or standby brain runs what was scheduled before. A due
follow-up is claimed by deleting its key at the revision it was read at, so two
brains never both run it.
"""

from __future__ import annotations

import logging
import time
import uuid

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from contracts.a2a import (
    JsonRpcRequest,
    Message,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    text_part,
)
from contracts.api.replies import Followup
from contracts.api.requests import FollowupCall
from contracts.base import UNDECODABLE
from contracts.buckets import FOLLOWUPS
from services.kit.buckets import bucket_keys, ensure_bucket

log = logging.getLogger("fleet.brain")

TENANT = "followup"
"""The A2A tenant a follow-up task runs as, so its tasks are told apart."""

_decode = msgspec.json.Decoder(Followup)


def new_followup(call: FollowupCall, now: float) -> Followup:
    """The follow-up a `followup.schedule` call asks for."""
    return Followup(
        id=f"fu-{uuid.uuid4().hex[:16]}",
        check=call.check,
        due_ts=now + call.after_minutes * 60.0,
        requester=call.requester,
        created_ts=now,
    )


def due(followups: list[Followup], now: float) -> list[Followup]:
    """The follow-ups to run now, oldest due first; pure."""
    return sorted((f for f in followups if f.due_ts <= now), key=lambda f: (f.due_ts, f.id))


def task_request(f: Followup) -> bytes:
    """The A2A SendMessage that runs a follow-up as a brain task (not waited for)."""
    text = (
        f"Scheduled follow-up check (scheduled by {f.requester} at "
        f"{time.strftime('%H:%M:%S', time.gmtime(f.created_ts))} UTC): {f.check}"
    )
    params = SendMessageRequest(
        message=Message(message_id=f.id, role=Role.USER, parts=[text_part(text)]),
        configuration=SendMessageConfiguration(return_immediately=True),
    )
    return msgspec.json.encode(
        JsonRpcRequest(
            jsonrpc="2.0", id=f.id, method="SendMessage", params=msgspec.to_builtins(params)
        )
    )


class FollowupStore:
    """The bucket, read and written by the brain."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> FollowupStore:
        return cls(await ensure_bucket(js, FOLLOWUPS, replicas=replicas))

    async def put(self, f: Followup) -> None:
        await self.kv.put(f.id, msgspec.json.encode(f))

    async def all(self) -> list[tuple[Followup, int]]:
        """Every stored follow-up with its revision; unreadable entries are skipped."""
        out = []
        for key in await bucket_keys(self.kv):
            try:
                entry = await self.kv.get(key)
            except NotFoundError:
                continue
            if entry.value:
                try:
                    out.append((_decode.decode(entry.value), entry.revision or 0))
                except UNDECODABLE:
                    log.warning("unreadable follow-up skipped", extra={"key": key})
        return out

    async def claim(self, f: Followup, revision: int) -> bool:
        """Take a due follow-up; False when another brain took it first."""
        try:
            await self.kv.delete(f.id, last=revision)
        except (KeyWrongLastSequenceError, NotFoundError):
            return False
        except Exception as exc:  # nats-py raises APIError for a wrong last sequence too
            if "wrong last sequence" in str(exc):
                return False
            raise
        return True
