"""Model backends of the runner: `sim` (simulated, labelled as such) and `anthropic` (Claude).

A backend streams an answer to a conversation: `stream(turns, task_id)` yields
text deltas, a ToolStep for each fleet tool Claude called on the way (only the
agent's own tools, services.runner.tooluse), and ends with one `Usage`.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec

from services.kit.errors import ConfigError
from services.kit.redact import add_secret
from services.runner.sessions import Turn
from services.runner.settings import RunnerSection
from services.runner.tooluse import AgentTools, ToolStep


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens one answer consumed."""

    input_tokens: int
    output_tokens: int


class ModelBackend(Protocol):
    """What the executor calls."""

    name: str

    def stream(self, turns: list[Turn], task_id: str = "") -> AsyncIterator[str | ToolStep | Usage]:
        """The answer to `turns`; `task_id` is what the tool calls' audit records refer to."""
        ...

    async def close(self) -> None: ...


def sim_latency(dist: str, mean_s: float, jitter: float, rng: random.Random) -> float:
    """One simulated latency in seconds, drawn from `dist` around `mean_s`."""
    if mean_s <= 0:
        return 0.0
    match dist:
        case "uniform":
            return rng.uniform(mean_s * (1 - jitter), mean_s * (1 + jitter))
        case "exponential":
            return rng.expovariate(1 / mean_s)
        case "lognormal":
            sigma = max(jitter, 1e-9)
            return rng.lognormvariate(math.log(mean_s) - sigma * sigma / 2, sigma)
    return mean_s


def rough_tokens(text: str) -> int:
    """A rough token count (~4 characters a token), for the simulated model."""
    return max(1, (len(text) + 3) // 4)


class SimModel:
    """A simulated model: answers after a configurable latency, with token counts.

    Its answers start with `[sim]` and quote the conversation so far, so a demo
    (or a test) can see which history a turn was answered with.
    """

    name = "sim"

    def __init__(self, section: RunnerSection, seed: int | None = None) -> None:
        self.section = section
        self.rng = random.Random(seed)

    async def stream(
        self, turns: list[Turn], task_id: str = ""
    ) -> AsyncIterator[str | ToolStep | Usage]:
        s = self.section
        users = [t.text for t in turns if t.role == "user"]
        last = users[-1] if users else ""
        text = f'[sim] turn {len(users)} of this conversation. You said: "{last[:200]}".'
        if len(users) > 1:
            text += f' Earlier you said: "{users[0][:200]}".'
        filler = max(0, s.sim_output_tokens - rough_tokens(text))
        text += " lorem" * (filler // 2)
        delay = sim_latency(s.sim_latency_dist, s.sim_latency_s, s.sim_jitter, self.rng)
        chunks = s.sim_chunks
        size = math.ceil(len(text) / chunks)
        for i in range(chunks):
            if delay > 0:
                await asyncio.sleep(delay / chunks)
            yield text[i * size : (i + 1) * size]
        chars = sum(len(t.text) for t in turns)
        yield Usage(input_tokens=max(1, (chars + 3) // 4), output_tokens=s.sim_output_tokens)

    async def close(self) -> None:
        """Nothing to release."""


class AnthropicModel:
    """Claude through the `anthropic` SDK, streaming (reads ANTHROPIC_API_KEY / _BASE_URL).

    With tools it runs the tool-use loop: the text of every step streams as it comes,
    each tool call is carried out by `tools` and its result sent back, until Claude
    answers without a call or `max_tool_steps` model calls have been made.
    """

    name = "anthropic"

    def __init__(
        self, section: RunnerSection, client: Any | None = None, tools: AgentTools | None = None
    ) -> None:
        import anthropic

        self.section = section
        self.tools = tools
        if client is None:
            if not os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get(
                "ANTHROPIC_AUTH_TOKEN"
            ):
                raise ConfigError(
                    'runner.model = "anthropic" needs ANTHROPIC_API_KEY in the environment; '
                    "set it, or use FLEET_RUNNER__MODEL=sim for the simulated model"
                )
            client = anthropic.AsyncAnthropic(timeout=section.request_timeout_s, max_retries=2)
            for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
                add_secret(os.environ.get(name, ""))  # echoed back in an error: never passed on
        self.client = client

    async def stream(
        self, turns: list[Turn], task_id: str = ""
    ) -> AsyncIterator[str | ToolStep | Usage]:
        from anthropic.types import TextBlock, ToolUseBlock  # the SDK loads only for Claude

        s = self.section
        messages: list[dict[str, Any]] = list(claude_messages(turns))
        extra: dict[str, Any] = (
            {"tools": self.tools.specs()} if self.tools and self.tools.allowed else {}
        )
        used = Usage(input_tokens=0, output_tokens=0)
        for step in range(1, s.max_tool_steps + 1):
            async with self.client.messages.stream(
                model=s.anthropic_model,
                max_tokens=s.max_tokens,
                system=s.system_prompt,
                messages=messages,  # type: ignore[arg-type]
                **extra,
            ) as stream:
                async for text in stream.text_stream:
                    if text:
                        yield text
                final = await stream.get_final_message()
            used = Usage(
                input_tokens=used.input_tokens + int(final.usage.input_tokens or 0),
                output_tokens=used.output_tokens + int(final.usage.output_tokens or 0),
            )
            calls = [b for b in final.content if isinstance(b, ToolUseBlock)]
            if not calls or self.tools is None:
                yield used
                return
            if step == s.max_tool_steps:
                break  # its results could not be shown to Claude: call nothing more
            said = "".join(b.text for b in final.content if isinstance(b, TextBlock)).strip()
            results = []
            for call in calls:
                done = await self.tools.call(call.name, call.input, said, task_id)
                yield done
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": msgspec.json.encode(done.result).decode(),
                        "is_error": done.is_error,
                    }
                )
            messages += [
                {"role": "assistant", "content": final.content},
                {"role": "user", "content": results},
            ]
        yield (
            f"\n\n(stopped: Claude still wanted to call tools after {s.max_tool_steps} model "
            "calls, the limit of one turn (runner.max_tool_steps); ask again for the rest)"
        )
        yield used

    async def close(self) -> None:
        await self.client.close()


def claude_messages(turns: list[Turn]) -> list[dict[str, str]]:
    """Turns as Messages API messages: alternating roles (repeats merged), user first."""
    out: list[dict[str, str]] = []
    for turn in turns:
        if out and out[-1]["role"] == turn.role:
            out[-1]["content"] += "\n\n" + turn.text
        else:
            out.append({"role": turn.role, "content": turn.text})
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out


def build_model(section: RunnerSection, tools: AgentTools | None = None) -> ModelBackend:
    """The backend `section.model` names; Claude gets `tools` (the simulated model calls none)."""
    if section.model == "anthropic":
        return AnthropicModel(section, tools=tools)
    return SimModel(section)
