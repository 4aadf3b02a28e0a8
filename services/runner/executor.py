"""The hosted agent: one turn of a session, answered by the model and streamed as artifacts."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from contracts.a2a import TaskState
from services.a2a import A2AEvent, TaskContext
from services.a2a.tasks import new_id
from services.runner.models import ModelBackend, Usage
from services.runner.sessions import Session, SessionStore, Turn
from services.runner.settings import RunnerSection
from services.runner.telemetry import RunnerMetrics, Tally
from services.runner.tooluse import ToolStep

log = logging.getLogger("fleet.runner")


@dataclass
class AgentExecutor:
    """Runs turns of agent `agent`: load the session, stream the model's answer, save."""

    agent: str
    model: ModelBackend
    sessions: SessionStore
    section: RunnerSection
    runner_id: str
    metrics: RunnerMetrics
    tally: Tally
    opened: dict[str, Session] = field(default_factory=dict)
    """Sessions the admission step opened, by message id, handed to the turn."""
    usage: dict[str, list[int]] = field(default_factory=dict)
    """tenant -> [input tokens, output tokens] served by this runner."""
    _tokens: list[Any] = field(default_factory=list)
    """The token counters (input, output) of this agent and model."""

    async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
        """One turn: the answer as artifact chunks, then COMPLETED with the usage."""
        session = self.opened.pop(ctx.message.message_id, None)
        if session is None:
            session = await self.sessions.open_session(ctx.tenant, ctx.context_id)
        user = Turn(role="user", text=ctx.text)
        turns = [*session.turns[-self.section.max_history :], user]
        artifact_id = new_id()
        held: str | None = None
        sent = 0
        answer: list[str] = []
        usage = Usage(input_tokens=0, output_tokens=0)
        meta = {"model": self.model.name, "runner": self.runner_id}
        try:
            async for item in self.model.stream(turns, ctx.task_id):
                if isinstance(item, Usage):
                    usage = item
                    continue
                if isinstance(item, ToolStep):
                    if held is not None:  # what was said before the call comes first
                        yield self._chunk(ctx, held, artifact_id, sent, meta, last=False)
                        sent, held = sent + 1, None
                    yield self._tool_status(ctx, item)
                    continue
                answer.append(item)
                if held is not None:  # one chunk behind, so the last one can say it is last
                    yield self._chunk(ctx, held, artifact_id, sent, meta, last=False)
                    sent += 1
                held = item
        except Exception as exc:
            self.metrics.errors.labels(self.agent, f"model_{type(exc).__name__}").inc()
            raise
        yield self._chunk(ctx, held or "", artifact_id, sent, meta, last=True)
        reply = Turn(role="assistant", text="".join(answer))
        session.turns = [*session.turns, user, reply][-self.section.max_history :]
        session.turn_count += 1
        session.input_tokens += usage.input_tokens
        session.output_tokens += usage.output_tokens
        session.runner = self.runner_id
        # Durable together with the task's final state, before the caller hears of it.
        ctx.store_with_result(self.sessions.save(session))
        self._record(ctx.tenant, usage)
        turn = session.turn_count
        yield ctx.status(
            TaskState.COMPLETED,
            data={
                **meta,
                "turn": turn,
                "usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens},
            },
        )

    def _tool_status(self, ctx: TaskContext, step: ToolStep) -> A2AEvent:
        """A WORKING status naming the tool call and its answer, so a caller sees it."""
        outcome = "refused" if step.refused else "error" if step.is_error else "ok"
        # A refused name is whatever the model wrote: not a label value.
        self.metrics.tool_calls.labels(self.agent, "" if step.refused else step.name, outcome).inc()
        return ctx.status(
            TaskState.WORKING,
            f"{'refused' if step.refused else 'called'} {step.name}",
            data={
                "tool": step.name,
                "arguments": step.args,
                "result": step.result,
                "isError": step.is_error,
            },
        )

    @staticmethod
    def _chunk(
        ctx: TaskContext, text: str, artifact_id: str, n: int, meta: dict[str, str], last: bool
    ) -> A2AEvent:
        event = ctx.artifact(
            text=text, name="answer", artifact_id=artifact_id, append=n > 0, last_chunk=last
        )
        if n == 0:
            event.artifact.metadata = meta
        return event

    def _record(self, tenant: str, usage: Usage) -> None:
        if not self._tokens:
            self._tokens = [
                self.metrics.tokens.labels(self.agent, self.model.name, kind)
                for kind in ("input", "output")
            ]
        self._tokens[0].inc(usage.input_tokens)
        self._tokens[1].inc(usage.output_tokens)
        total = self.usage.setdefault(tenant, [0, 0])
        total[0] += usage.input_tokens
        total[1] += usage.output_tokens
        self.tally.tokens += usage.input_tokens + usage.output_tokens
        self.tally.last_active = time.time()
        if self.model.name != "sim":
            log.info(
                "tokens used",
                extra={
                    "agent": self.agent,
                    "tenant": tenant,
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                },
            )
