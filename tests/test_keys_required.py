"""A deployment that only binds to what `fleet init` made (`[nats] create_resources =
false`: `fleet up --secure`, the Kubernetes manifests) does not start a reader of signed
messages without the keys it checks them with: a forgotten `[signing]` setting is an
error at start naming it, not a warning and a fleet that believes anyone. Started by
hand (creating what it needs), the same service warns and runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.kit.binding import creates
from services.kit.config import load_settings
from services.kit.errors import ConfigError
from tests.fleet_helpers import kit
from tests.provisioner_helpers import eventually
from tests.signing_helpers import PROVISIONER
from tools.configcheck import settings_type
from tools.registry import load
from tools.secure.admin import Plan, initialize

REPO = Path(__file__).resolve().parents[1]
READERS = {
    "watcher": "provisioner_key",
    "scaler": "costguard_key",
    "gateway": "costguard_key",
    "runner": "provisioner_key",
}


def unkeyed(name: str, tmp_path: Path, nats_url: str, *, binding: bool) -> Any:
    extra: dict[str, Any] = {"nats": {"create_resources": not binding}}
    if name == "runner":
        extra["runner"] = {"unit": "r-1", "pool": "agents-assistant"}
    settings = load_settings(settings_type(name), env={}, overrides=kit(tmp_path, name, **extra))
    return load(name)(settings, nats_url=nats_url)


@pytest.mark.parametrize("name", sorted(READERS))
async def test_a_binding_reader_without_its_keys_does_not_start(
    name: str, nats_url: str, nc: Client, tmp_path: Path
) -> None:
    await initialize(nc.jetstream(timeout=10), Plan(agents=("assistant",)))
    svc = unkeyed(name, tmp_path, nats_url, binding=True)
    try:
        with pytest.raises(ConfigError, match=r"\[signing\].*create_resources = false") as err:
            await svc.start()
        assert READERS[name] in str(err.value) or "seed_file" in str(err.value)
    finally:
        await svc.stop()
        creates(True)

    svc = unkeyed(name, tmp_path / "by-hand", nats_url, binding=False)
    try:
        await svc.start()
        assert svc.state == "ready"
    finally:
        await svc.stop()


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


async def test_a_binding_worker_without_the_provisioners_key_exits_with_the_setting(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    await initialize(nc.jetstream(timeout=10), Plan(pools=("gpu",)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_NATS__CREATE_RESOURCES"] = "false"
    ready = tmp_path / "unit.ready"
    argv = [
        sys.executable, "-m", "services.provisioner.worker", "--pool", "gpu", "--unit", "w-9",
        "--nats", nats_url, "--ready-file", str(ready),
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "provisioner_key" in done.stderr and "create_resources = false" in done.stderr
    assert "Traceback" not in done.stderr and not ready.exists()

    env["FLEET_SIGNING__PROVISIONER_KEY"] = PROVISIONER.public_key
    keyed = _start(argv, env)
    try:  # with the key it gets past the check: connected, it touches its ready file
        await eventually(lambda: ready.exists() or keyed.poll() is not None, 30)
        assert ready.exists(), keyed.stderr.read() if keyed.stderr else ""
    finally:
        keyed.terminate()
        keyed.wait(15)
