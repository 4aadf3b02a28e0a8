"""The brain as an A2A agent: each task runs the model loop, or the rule policy without a key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anthropic

from contracts.a2a import TaskState
from services.a2a import A2AEvent, TaskContext
from services.brain import coordinator, intents, rulemode
from services.brain.advisors import View
from services.brain.guard import Limits
from services.brain.loop import run_loop
from services.brain.settings import BrainOptions
from services.brain.toolbox import Bus, Toolbox


class BrainHost(Bus, Protocol):
    opts: BrainOptions
    client: anthropic.AsyncAnthropic | None

    async def consult(self, advisor: str, report: dict[str, Any]) -> View | None: ...


def limits_of(opts: BrainOptions) -> Limits:
    return Limits(opts.max_provision_units_per_task, opts.max_usd_per_hour_per_task)


class BrainAgent:
    """Executor of agent `fleet` (services.a2a.Executor)."""

    def __init__(self, host: BrainHost) -> None:
        self.host = host

    async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
        toolbox = Toolbox(self.host, ctx.task_id, limits_of(self.host.opts))
        if not ctx.text.strip():
            yield ctx.status(TaskState.REJECTED, "send a question or an instruction as text")
            return
        if self.host.client is None:
            async for event in self._rules(ctx, toolbox):
                yield event
            return
        async for event in self._model(ctx, toolbox):
            yield event

    async def _model(self, ctx: TaskContext, toolbox: Toolbox) -> AsyncIterator[A2AEvent]:
        assert self.host.client is not None
        opts = self.host.opts
        yield ctx.status(TaskState.WORKING, f"thinking ({opts.model})")
        answer_id = uuid.uuid4().hex
        chunks = 0
        text = ctx.text
        if intents.intent_of(text) in ("history", "coordinate"):
            yield ctx.status(TaskState.WORKING, "reading the report and asking the advisors")
            why = "coordinator: the report and both advisors' views before the model weighs them"
            got = await coordinator.advise(text, toolbox, self.host.consult, why)
            if not isinstance(got, str):
                text += coordinator.brief(*got)
        loop = run_loop(self.host.client, opts, toolbox, text)
        try:
            async with asyncio.timeout(opts.max_task_s):
                async for step in loop:
                    if step.kind == "text" and step.text:
                        yield ctx.artifact(
                            text=step.text,
                            name="answer",
                            artifact_id=answer_id,
                            append=chunks > 0,
                            last_chunk=False,
                        )
                        chunks += 1
                    elif step.kind == "tool":
                        yield ctx.status(
                            TaskState.WORKING,
                            f"called {step.name}",
                            data={"tool": step.name, "arguments": step.args, "result": step.result},
                        )
                    elif step.kind == "retry":
                        yield ctx.status(TaskState.WORKING, f"model API: {step.text}")
                    elif step.kind == "done":
                        data = {
                            "usage": step.usage,
                            "tool_calls": toolbox.calls,
                            "refusals": toolbox.refusals,
                        }
                        yield ctx.status(TaskState.COMPLETED, step.text or "(no text)", data=data)
                        return
                    elif step.kind == "failed":
                        yield ctx.status(TaskState.FAILED, step.text, data={"usage": step.usage})
                        return
        except TimeoutError:
            yield ctx.status(
                TaskState.FAILED,
                f"stopped: the task ran longer than {opts.max_task_s:g} s (brain.max_task_s)",
            )
        except anthropic.APIError as exc:
            yield ctx.status(TaskState.FAILED, f"the model API refused the call: {exc}")
        finally:
            await loop.aclose()

    async def _rules(self, ctx: TaskContext, toolbox: Toolbox) -> AsyncIterator[A2AEvent]:
        yield ctx.status(TaskState.WORKING, "rule policy (no model)")
        answer, data = await rulemode.answer(ctx.text, toolbox, self.host.consult)
        yield ctx.artifact(text=answer, data=data, name="answer")
        yield ctx.status(TaskState.COMPLETED, answer)
