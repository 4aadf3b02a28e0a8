"""A model endpoint that echoes request headers in its errors hands our API key back
to us. The key must then reach nothing: not the task's status, not `fleet ask`'s
output, not any stream or KV bucket, not the services' SQLite files (WAL included),
not a log line. Both paths that call Claude are driven: the brain (`fleet ask`) and
a hosted agent's runner."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.a2a import TaskState
from services.a2a.client import A2AClient
from services.brain.service import Brain
from services.brain.settings import BrainSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from services.kit.logs import JsonFormatter
from services.kit.redact import MASK, scrub, scrub_bytes, secret_values
from services.kit.signing import Signer, new_seed
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings
from tests.fakes.anthropic_api import FakeAnthropic, echo_headers
from tests.fakes.fleet_api import FakeFleetOwners
from tests.test_ask import fleet_ask


@pytest.fixture
def key() -> str:
    return "sk-ant-api03-" + secrets.token_hex(16)


@pytest.fixture
def echoing(key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """A Messages endpoint that answers every call with the request's headers echoed."""
    with FakeAnthropic([echo_headers()], repeat_last=True) as fake:
        fake.api_key = key
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        yield fake


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line as a deployed service writes it (the JSON formatter on stderr)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def everything_in_nats(nc: Client) -> bytes:
    """Every message of every stream (KV buckets are streams too): data and headers."""
    js = nc.jetstream()
    found = bytearray()
    for info in await js.streams_info():
        name = info.config.name
        if not info.state.messages:
            continue
        for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
            try:
                msg = await js.get_msg(name, seq)
            except NotFoundError:
                continue
            found += (msg.subject or "").encode() + (msg.data or b"")
            found += repr(msg.headers or {}).encode()
    return bytes(found)


def everything_on_disk(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_the_brain_passes_on_the_error_but_never_the_key(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    key: str,
    echoing: FakeAnthropic,
    log_lines: io.StringIO,
) -> None:
    owners = await FakeFleetOwners(nc).start()
    store: dict[str, Any] = {"store": {"dir": str(tmp_path)}}
    gw = Gateway(load_settings(GatewaySettings, env={}, overrides=store), nats_url=nats_url)
    brain = Brain(
        load_settings(
            BrainSettings,
            env={},
            overrides={**store, "brain": {"routine_interval_s": 0, "retries": 0}},
        ),
        nats_url=nats_url,
    )
    await gw.start()
    await brain.start()
    try:
        _code, out, err = await fleet_ask(nats_url, "how is the fleet doing?")
        output = out + err
        client = A2AClient(nc, "fleet", tenant="ops", timeout_s=20)
        task = await client.send("and now?")
    finally:
        await brain.stop()
        await gw.stop()
        await owners.stop()

    assert echoing.errors_sent >= 2  # both questions reached the echoing endpoint
    status = task.status.message.parts[0].text or "" if task.status.message else ""
    assert task.status.state == TaskState.FAILED
    assert "headers were" in status and MASK in status  # the error is passed on, masked
    assert "headers were" in output and MASK in output
    assert key not in output
    assert key.encode() not in await everything_in_nats(nc)
    assert key.encode() not in everything_on_disk(tmp_path)  # brain.db, its -wal, the tasks
    assert key not in log_lines.getvalue()


async def test_a_hosted_agent_fails_its_task_without_the_key(
    nats_url: str,
    nc: Client,
    tmp_path: Path,
    key: str,
    echoing: FakeAnthropic,
    log_lines: io.StringIO,
) -> None:
    settings = load_settings(
        RunnerSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "stop_deadline_s": 2.0,
            "runner": {"model": "anthropic", "unit": "claude1", "anthropic_model": "claude-t"},
        },
    )
    svc = RunnerService(settings, nats_url=nats_url)
    await svc.start()
    try:
        client = A2AClient(nc, subjects.hosted_agent("assistant"), tenant="acme", timeout_s=30)
        task = await client.send("hello")
        again = await client.get(task.id)
    finally:
        await svc.stop()

    assert echoing.errors_sent >= 1
    for t in (task, again):
        assert t.status.state == TaskState.FAILED
        text = t.status.message.parts[0].text or "" if t.status.message else ""
        assert "headers were" in text and key not in text
    assert key.encode() not in await everything_in_nats(nc)
    assert key.encode() not in everything_on_disk(tmp_path)
    assert key not in log_lines.getvalue()


def test_secret_values_come_from_secret_names_and_files(tmp_path: Path) -> None:
    creds = tmp_path / "svc.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJhbGciOi.jwt-body.sig\n------END NATS USER JWT------\n"
        "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"
    )
    found = secret_values(
        {
            "ANTHROPIC_API_KEY": "sk-ant-123456",
            "FLEET_NATS__PASSWORD": "hunter22",
            "FLEET_NATS__CREDS_FILE": str(creds),
            "FLEET_COSTGUARD__PUBLIC_KEY": "UABC1234567890",  # meant to be shown
            "FLEET_PROVIDERS__VAST__KEY_SOURCE": "env-var",  # a setting about a key
            "FLEET_SIM__SEED": "42",  # too short to be a secret
            "HOME": "/home/someone",
        }
    )
    assert "sk-ant-123456" in found and "hunter22" in found
    assert "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4" in found
    assert "eyJhbGciOi.jwt-body.sig" in found
    assert not {"UABC1234567890", "env-var", "42", "/home/someone"} & set(found)
    assert not any("BEGIN NATS" in v and "\n" not in v for v in found)  # banners are not secrets
    assert scrub("key=sk-ant-123456!", found) == "key=***!"


def test_a_secret_inside_another_is_masked_whole() -> None:
    assert scrub("a hunter22-long b", ["hunter22-long", "hunter22"]) == "a *** b"
    assert scrub_bytes(b"nothing to hide") == b"nothing to hide"


def test_signing_public_keys_are_not_secrets_but_seeds_are() -> None:
    # Signed messages carry the signer's public key in their headers: masking it there
    # (its variable is `FLEET_SIGNING__COSTGUARD_KEY`) would make every verdict unverifiable.
    signer = Signer(new_seed())
    seed = "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"
    found = secret_values(
        {"FLEET_SIGNING__COSTGUARD_KEY": signer.public_key, "FLEET_SIGNING__SEED": seed}
    )
    assert found == [seed]
