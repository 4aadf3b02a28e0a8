"""Model backends of the runner: `sim` (simulated, labelled as such) and `anthropic` (Claude).

A backend streams an answer to a conversation: `stream(turns)` yields text
deltas and ends with one `Usage`.
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


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens one answer consumed."""

    input_tokens: int
    output_tokens: int


class ModelBackend(Protocol):
    """What the executor calls."""

    name: str

    def stream(self, turns: list[Turn]) -> AsyncIterator[str | Usage]: ...

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

    async def stream(self, turns: list[Turn]) -> AsyncIterator[str | Usage]:
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
    """Claude through the `anthropic` SDK, streaming (reads ANTHROPIC_API_KEY / _BASE_URL)."""

    name = "anthropic"

    def __init__(self, section: RunnerSection, client: Any | None = None) -> None:
        import anthropic

        self.section = section
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

    async def stream(self, turns: list[Turn]) -> AsyncIterator[str | Usage]:
        s = self.section
        async with self.client.messages.stream(
            model=s.anthropic_model,
            max_tokens=s.max_tokens,
            system=s.system_prompt,
            messages=claude_messages(turns),  # type: ignore[arg-type]
        ) as stream:
            async for text in stream.text_stream:
                if text:
                    yield text
            final = await stream.get_final_message()
        yield Usage(
            input_tokens=int(final.usage.input_tokens or 0),
            output_tokens=int(final.usage.output_tokens or 0),
        )

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


def build_model(section: RunnerSection) -> ModelBackend:
    """The backend `section.model` names."""
    if section.model == "anthropic":
        return AnthropicModel(section)
    return SimModel(section)
