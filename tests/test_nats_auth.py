"""The secured deployment's NATS permissions (deploy/nats/auth.conf) on a real
server: every service can run under its own user, and only the cost-guard can
publish a verdict that makes the provisioner spend money."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from services.kit import Service
from services.kit.config import KitSettings, load_settings
from tools.natsserver import free_port, nats_server_binary, stop_nats, wait_for_port

AUTH = Path(__file__).resolve().parents[1] / "deploy" / "nats" / "auth.conf"
USERS = ("costguard", "watcher", "scaler", "provisioner", "gateway", "brain", "runner")
PASSWORDS = {f"NATS_{u.upper()}_PASSWORD": f"pw-{u}" for u in (*USERS, "operator", "admin", "sys")}


@pytest.fixture(scope="module")
def secured_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server running deploy/nats/auth.conf, passwords from its environment."""
    where = tmp_path_factory.mktemp("secured")
    shutil.copy(AUTH, where / "auth.conf")
    port = free_port()
    (where / "server.conf").write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{where / "js"}" }}\n'
        "include ./auth.conf\n"
    )
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(where / "server.conf")],
        env={**os.environ, **PASSWORDS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 30, proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_nats(proc)


async def login(
    url: str, user: str, errors: list[str] | None = None, refused: asyncio.Event | None = None
) -> Client:
    """Connect as `user`; asynchronous server errors (permission violations) go to `errors`."""

    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))
        if refused is not None:
            refused.set()

    return await nats.connect(url, user=user, password=f"pw-{user}", error_cb=on_error)


@pytest.fixture
async def operator(secured_url: str) -> AsyncIterator[Client]:
    client = await login(secured_url, "operator")
    yield client
    await client.close()


class Probe(Service):
    name = "probe"


@pytest.mark.parametrize("user", USERS)
async def test_each_service_user_can_start_a_service(
    secured_url: str, user: str, tmp_path: Path
) -> None:
    settings = load_settings(
        KitSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "nats": {"user": user, "password": f"pw-{user}", "connect_deadline_s": 5},
        },
    )
    svc = Probe(settings, nats_url=secured_url)
    await svc.start()
    try:
        assert svc.state == "ready"
    finally:
        await svc.stop()


async def test_only_the_costguard_can_publish_an_approval(
    secured_url: str, operator: Client
) -> None:
    seen = await operator.subscribe("fleet.budget.approved")
    for user in USERS:
        errors: list[str] = []
        refused = asyncio.Event()
        client = await login(secured_url, user, errors, refused)
        try:
            await client.publish("fleet.budget.approved", user.encode())
            await client.flush()
            if user != "costguard":
                await asyncio.wait_for(refused.wait(), 5)
                assert "permissions violation" in errors[0].lower()
        finally:
            await client.close()
    got = await seen.next_msg(5)
    assert got.data == b"costguard"
    with pytest.raises(nats.errors.TimeoutError):
        await seen.next_msg(0.3)  # nobody else's got through


async def test_a_wrong_password_is_refused(secured_url: str) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(secured_url, user="costguard", password="guess", allow_reconnect=False)
