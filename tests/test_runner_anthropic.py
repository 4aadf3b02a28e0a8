"""The runner's `anthropic` backend: the real anthropic client against a local fake
Messages API, streaming Claude's answer as artifact chunks and counting its tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import TaskState
from services.a2a.client import A2AClient
from services.kit import ConfigError
from services.kit.config import load_settings
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from tests.fakes.anthropic_api import FakeAnthropic, rate_limited, text

AGENT = subjects.hosted_agent("assistant")


def settings(tmp_path: Path, **runner: Any) -> RunnerSettings:
    section = {"model": "anthropic", "unit": "claude1", "anthropic_model": "claude-test", **runner}
    return load_settings(
        RunnerSettings,
        env={},
        overrides={"store": {"dir": str(tmp_path)}, "stop_deadline_s": 2.0, "runner": section},
    )


async def test_claude_answers_stream_as_chunks_with_history_and_token_usage(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [[text("Hello Ada, nice to meet you.")], [text("Your name is Ada.")]]
    with FakeAnthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        svc = RunnerService(settings(tmp_path, system_prompt="Be brief."), nats_url=nats_url)
        await svc.start()
        client = A2AClient(nc, AGENT, tenant="acme", timeout_s=20)
        try:
            events = [
                e async for e in client.stream(client.user_message("I am Ada", context_id="c1"))
            ]
            chunks = [e.artifact_update for e in events if e.artifact_update]
            assert len(chunks) == 6  # one per streamed word
            assert "".join(c.artifact.parts[0].text or "" for c in chunks) == (
                "Hello Ada, nice to meet you."
            )
            assert chunks[0].artifact.metadata == {"model": "anthropic", "runner": svc.runner_id}
            assert chunks[-1].last_chunk and not chunks[0].append and chunks[1].append
            final = events[-1].status_update
            assert final is not None and final.status.state == TaskState.COMPLETED
            assert final.status.message is not None
            data = final.status.message.parts[0].data
            first_in = fake.requests[0]
            assert data["usage"]["outputTokens"] == 20
            assert data["usage"]["inputTokens"] >= 100

            task = await client.send(client.user_message("What is my name?", context_id="c1"))
            assert task.status.state == TaskState.COMPLETED
            assert "".join(p.text or "" for p in task.artifacts[0].parts) == "Your name is Ada."
            second_in = fake.requests[1]
            assert first_in["model"] == "claude-test" and first_in["stream"] is True
            assert first_in["system"] == "Be brief."
            assert [m["role"] for m in second_in["messages"]] == ["user", "assistant", "user"]
            assert second_in["messages"][1]["content"] == "Hello Ada, nice to meet you."
            assert svc.agents["assistant"].executor.usage["acme"][1] == 40
        finally:
            await svc.stop()


async def test_a_messages_api_error_fails_the_task_with_the_reason(
    nats_url: str, nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeAnthropic([rate_limited()], repeat_last=True) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        svc = RunnerService(settings(tmp_path), nats_url=nats_url)
        await svc.start()
        client = A2AClient(nc, AGENT, tenant="acme", timeout_s=30)
        try:
            task = await client.send("hello")
            assert task.status.state == TaskState.FAILED
            assert task.status.message is not None
            assert "RateLimitError" in (task.status.message.parts[0].text or "") or (
                "429" in (task.status.message.parts[0].text or "")
            )
            assert fake.errors_sent == 3  # the SDK's own retries, then the task fails
        finally:
            await svc.stop()


def test_the_anthropic_backend_without_a_key_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        RunnerService(settings(tmp_path), nats_url="nats://127.0.0.1:1")
