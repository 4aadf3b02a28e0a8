"""A2A tasks as values: ids, how an event changes a task, how a task is trimmed for an
answer, and the small interface of the stores that keep tasks between calls.

Everything here is pure; the stores (services.a2a.stores) do the I/O. A task is
stored with the tenant that created it; a read by another tenant finds nothing.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

import msgspec

from contracts.a2a import (
    Artifact,
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    iso_now,
)

_IDS = random.Random()  # seeded from the OS once; ids need to be unique, not secret


class StoredTask(msgspec.Struct, kw_only=True):
    """A task with its owner and last change (unix seconds)."""

    task: Task
    tenant: str
    updated_ts: float = msgspec.field(default_factory=time.time)


class TaskStore(Protocol):
    """Tasks by id, per tenant."""

    async def get(self, task_id: str, tenant: str) -> Task | None:
        """The task if it exists and belongs to `tenant`."""
        ...

    async def put(self, task: Task, tenant: str) -> None:
        """Create or replace the task."""
        ...

    async def list(self, tenant: str) -> list[StoredTask]:
        """Every task of `tenant`, most recently changed first."""
        ...


def new_id() -> str:
    """A random 32-hex-digit id for a task, context, message or artifact (no syscall)."""
    return f"{_IDS.getrandbits(128):032x}"


def apply_event(task: Task, event: TaskStatusUpdateEvent | TaskArtifactUpdateEvent) -> Task:
    """The task after `event`: a new status, or an artifact added, replaced or appended to."""
    if isinstance(event, TaskStatusUpdateEvent):
        history = list(task.history)
        msg = event.status.message
        if msg is not None and all(m.message_id != msg.message_id for m in history):
            history.append(msg)
        return msgspec.structs.replace(task, status=event.status, history=history)
    artifacts = list(task.artifacts)
    new = event.artifact
    for i, old in enumerate(artifacts):
        if old.artifact_id == new.artifact_id:
            if event.append:
                new = msgspec.structs.replace(old, parts=[*old.parts, *new.parts])
            artifacts[i] = new
            break
    else:
        artifacts.append(new)
    return msgspec.structs.replace(task, artifacts=artifacts)


def trimmed(task: Task, history_length: int | None, include_artifacts: bool = True) -> Task:
    """The task with at most `history_length` latest messages and, optionally, no artifacts."""
    history = task.history
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    artifacts: list[Artifact] = task.artifacts if include_artifacts else []
    return msgspec.structs.replace(task, history=history, artifacts=artifacts)


def new_task(message: Message) -> tuple[Task, Message]:
    """A SUBMITTED task for a first message (ids filled in where the client left them)."""
    task_id = new_id()
    context_id = message.context_id or new_id()
    message = msgspec.structs.replace(message, task_id=task_id, context_id=context_id)
    task = Task(
        id=task_id,
        context_id=context_id,
        status=TaskStatus(state=TaskState.SUBMITTED, timestamp=iso_now()),
        history=[message],
    )
    return task, message
