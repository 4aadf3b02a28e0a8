"""What an agent's executor sees and yields: the task context and the task events.

    class Echo:
        async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
            yield ctx.status(TaskState.WORKING, "thinking")
            yield ctx.artifact(text=ctx.text.upper(), name="answer")
            yield ctx.status(TaskState.COMPLETED, "done")

A state in TERMINAL_STATES or INTERRUPTED_STATES ends the run; an executor
that returns without one completes the task; one that raises fails it with
the error's text. CancelTask cancels the executor (it sees CancelledError).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.a2a import (
    INTERRUPTED_STATES,
    TERMINAL_STATES,
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    data_part,
    iso_now,
    message_text,
)
from services.a2a.tasks import new_id

A2AEvent = TaskStatusUpdateEvent | TaskArtifactUpdateEvent


def ends_stream(state: TaskState) -> bool:
    """True when a stream closes and a blocking call answers at this state."""
    return state in TERMINAL_STATES or state in INTERRUPTED_STATES


@dataclass
class TaskContext:
    """What an executor gets: the task, the message that started this run, who sent it."""

    task: Task
    message: Message
    tenant: str
    headers: dict[str, str] = field(default_factory=dict)
    with_result: list[Coroutine[Any, Any, Any]] = field(default_factory=list)
    """Writes that must be durable before anyone hears how this run ended; see
    `store_with_result`."""

    def store_with_result(self, write: Coroutine[Any, Any, Any]) -> None:
        """Run `write` (e.g. saving the session this turn changed) alongside the store's
        write of the run's final or interrupted state; callers hear of that state only
        once both are done, and if `write` fails the task fails."""
        self.with_result.append(write)

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def context_id(self) -> str:
        return self.task.context_id or self.task.id

    @property
    def text(self) -> str:
        """The text of the incoming message."""
        return message_text(self.message)

    def agent_message(self, text: str | None = None, data: Any = None) -> Message:
        """A message from the agent in this task's context."""
        parts: list[Part] = []
        if text is not None:
            parts.append(Part(text=text))
        if data is not None:
            parts.append(data_part(data))
        return Message(
            message_id=new_id(),
            role=Role.AGENT,
            parts=parts or [Part(text="")],
            context_id=self.context_id,
            task_id=self.task_id,
        )

    def status(
        self, state: TaskState, text: str | None = None, data: Any = None
    ) -> TaskStatusUpdateEvent:
        """A status update, with an agent message when `text` or `data` is given."""
        msg = self.agent_message(text, data) if text is not None or data is not None else None
        return TaskStatusUpdateEvent(
            task_id=self.task_id,
            context_id=self.context_id,
            status=TaskStatus(state=state, message=msg, timestamp=iso_now()),
        )

    def artifact(
        self,
        *,
        text: str | None = None,
        data: Any = None,
        name: str | None = None,
        artifact_id: str | None = None,
        append: bool = False,
        last_chunk: bool = True,
    ) -> TaskArtifactUpdateEvent:
        """An artifact (or, with `append`, a further chunk of one with the same id)."""
        parts: list[Part] = []
        if text is not None:
            parts.append(Part(text=text))
        if data is not None:
            parts.append(data_part(data))
        return TaskArtifactUpdateEvent(
            task_id=self.task_id,
            context_id=self.context_id,
            artifact=Artifact(artifact_id=artifact_id or new_id(), parts=parts, name=name),
            append=append,
            last_chunk=last_chunk,
        )


class Executor(Protocol):
    """The agent: turns a task context into events."""

    def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]: ...
