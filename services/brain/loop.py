"""The tool-use loop on the Messages API (streaming), bounded in steps, tokens and retries.

`run_loop` yields Steps: text deltas as the model writes them, each tool call
with its result, then one `done` (the final answer) or `failed` (why it stopped).
Model calls answered 429, 5xx or overloaded are retried with exponential backoff
and jitter; the SDK's own retries are off so the budget of retries is ours.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic

from services.brain.settings import BrainOptions
from services.brain.toolbox import Toolbox, as_text
from services.brain.tools import TOOLS

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass
class Step:
    kind: Literal["text", "tool", "retry", "done", "failed"]
    text: str = ""
    name: str = ""
    args: Any = None
    result: Any = None
    usage: dict[str, int] = field(default_factory=dict)


def retryable(exc: BaseException) -> bool:
    """True for rate limits, server errors, overload and dropped connections."""
    if isinstance(exc, anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in RETRY_STATUS or "overloaded" in str(exc).lower()
    return False


def backoff_s(attempt: int, base_s: float, cap_s: float = 8.0) -> float:
    """Delay before retry `attempt` (1-based): exponential, capped, with full jitter on top half."""
    top = min(cap_s, base_s * 2 ** (attempt - 1))
    return float(top / 2 + random.random() * top / 2)


def _block(block: Any) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return {"type": block.type}


async def run_loop(
    client: anthropic.AsyncAnthropic,
    opts: BrainOptions,
    toolbox: Toolbox,
    prompt: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[Step, None]:
    """Converse with the model until it answers without a tool call, or a limit stops it."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    tools = [t.spec() for t in TOOLS]
    used = {"input_tokens": 0, "output_tokens": 0}
    for _step in range(opts.max_steps):
        final = None
        for attempt in range(1, opts.retries + 2):
            try:
                async with client.messages.stream(
                    model=opts.model,
                    max_tokens=opts.max_tokens,
                    system=opts.system_prompt,
                    tools=tools,  # type: ignore[arg-type]
                    messages=messages,  # type: ignore[arg-type]
                ) as stream:
                    async for event in stream:
                        if event.type == "text":
                            yield Step("text", text=event.text)
                    final = await stream.get_final_message()
                break
            except Exception as exc:
                if not retryable(exc):
                    raise
                if attempt > opts.retries:
                    yield Step(
                        "failed",
                        text=f"the model API kept failing after {opts.retries} retries: {exc}",
                        usage=used,
                    )
                    return
                delay = backoff_s(attempt, opts.retry_base_s)
                yield Step("retry", text=f"{type(exc).__name__}; retry {attempt} in {delay:.1f}s")
                await sleep(delay)
        assert final is not None
        used["input_tokens"] += final.usage.input_tokens
        used["output_tokens"] += final.usage.output_tokens
        messages.append({"role": "assistant", "content": [_block(b) for b in final.content]})
        reasoning = "".join(b.text for b in final.content if b.type == "text").strip()
        calls = [b for b in final.content if b.type == "tool_use"]
        if not calls:
            yield Step("done", text=reasoning, usage=used)
            return
        results = []
        for call in calls:
            result, is_error = await toolbox.call(call.name, call.input, reasoning)
            yield Step("tool", name=call.name, args=call.input, result=result)
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": as_text(result),
                    "is_error": is_error,
                }
            )
        messages.append({"role": "user", "content": results})
        if used["input_tokens"] + used["output_tokens"] >= opts.max_task_tokens:
            yield Step(
                "failed",
                text=f"stopped: the task used {sum(used.values())} tokens, its limit is "
                f"{opts.max_task_tokens} (brain.max_task_tokens)",
                usage=used,
            )
            return
    yield Step(
        "failed",
        text=f"stopped after {opts.max_steps} model steps without a final answer "
        "(brain.max_steps); the model kept calling tools",
        usage=used,
    )
