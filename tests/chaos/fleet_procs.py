"""The chaos suite's fleet: every service as `fleet run SERVICE` processes, the
singletons with a standby on one store (compose's shared volume), the others alone and
started again when killed (as `fleet up`'s supervisor does); each instance's /healthz
says which one is active."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from tests.signing_helpers import signing_env

REPO = Path(__file__).resolve().parents[2]
SINGLETONS = ("costguard", "provisioner", "scaler", "brain")
ALONE = ("watcher", "gateway")
SIGNERS = ("costguard", "provisioner", "watcher")
"""The services that sign what they publish (docs/adr/0012-signed-messages.md)."""


@dataclass
class Instance:
    """One `fleet run SERVICE` process."""

    service: str
    proc: subprocess.Popen[bytes]
    nats_url: str
    port: int = 0
    """Its HTTP port, once learnt (`http_port`): each binds a free one of its own, as a
    port picked here could be taken by another process before the service binds it."""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Fleet:
    """Every instance of every service, with what the kills measured."""

    base: Path
    nats_url: str
    config: Path
    instances: dict[str, list[Instance]] = field(default_factory=dict)
    takeovers: dict[str, list[float]] = field(default_factory=dict)
    """Seconds from the SIGKILL of the active instance to another one being ready."""
    spawned: int = 0

    def env(self, service: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLEET_") and k != "ANTHROPIC_API_KEY"
        }
        env.update(
            FLEET_NATS_URL=self.nats_url,
            FLEET_CONFIG=str(self.config),
            FLEET_STORE__DIR=str(self.base / "state" / service),  # shared by its instances
            FLEET_HTTP__PORT="0",
            FLEET_LOG__LEVEL="warning",
            PYTHONUNBUFFERED="1",
        )
        env.update(signing_env(service if service in SIGNERS else None))
        return env

    def spawn(self, service: str) -> Instance:
        self.spawned += 1
        with open(self.base / "logs" / f"{service}-{self.spawned}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tools", "run", service],
                cwd=REPO,
                env=self.env(service),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        instance = Instance(service, proc, self.nats_url)
        self.instances.setdefault(service, []).append(instance)
        return instance

    async def start(self) -> None:
        """Two instances of each singleton (the second stands by), one of the others."""
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        for service in ALONE[:1] + SINGLETONS + ALONE[1:]:
            for _ in range(2 if service in SINGLETONS else 1):
                self.spawn(service)
        for service, instances in self.instances.items():
            for inst in instances:
                await until_state(inst, ("ready", "standby"), 60)
            if service in SINGLETONS:
                await self.active(service, 30)

    async def active(self, service: str, timeout_s: float = 5.0) -> Instance:
        """The instance of `service` that is ready (for a singleton: the lease holder)."""
        give_up = time.monotonic() + timeout_s
        while True:
            for inst in self.instances[service]:
                if inst.alive and (await health(inst)).get("state") == "ready":
                    return inst
            if time.monotonic() > give_up:
                raise AssertionError(f"no ready {service} within {timeout_s} s")
            await asyncio.sleep(0.05)

    async def kill_active(self, service: str) -> float:
        """SIGKILL the active instance; the seconds until another one is ready (a standby
        taking over, or, for a service without one, the instance started in its place)."""
        victim = await self.active(service)
        victim.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.proc.wait(10)
        self.instances[service].remove(victim)
        if service not in SINGLETONS:
            self.spawn(service)  # the supervisor's restart
        taken = await self.active(service, timeout_s=60)
        took = time.monotonic() - killed
        self.takeovers.setdefault(service, []).append(took)
        if service in SINGLETONS:
            await until_state(self.spawn(service), ("standby",), 60)  # the new standby
        assert taken.alive
        return took

    def stop(self) -> None:
        for instances in self.instances.values():
            for inst in instances:
                if inst.alive:
                    inst.proc.send_signal(signal.SIGTERM)
        for instances in self.instances.values():
            for inst in instances:
                try:
                    inst.proc.wait(20)
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
                    inst.proc.wait(10)


async def http_port(inst: Instance) -> int:
    """The instance's HTTP port from its NATS micro registration (metadata `instance`,
    `<host>-<pid>-<n>`, and `http_port`), which a standby makes too; 0 until it has.
    Read as the answers come, so learning it adds no fixed wait to a measured takeover."""
    if inst.port:
        return inst.port
    nc = await nats.connect(inst.nats_url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$SRV.PING", b"", reply=inbox)
        give_up = time.monotonic() + 0.3
        while (left := give_up - time.monotonic()) > 0:
            try:
                info = json.loads((await sub.next_msg(timeout=left)).data)
            except (nats.errors.TimeoutError, ValueError):
                break
            meta = (info.get("metadata") or {}) if isinstance(info, dict) else {}
            parts = str(meta.get("instance", "")).split("-")
            if len(parts) >= 2 and parts[-2] == str(inst.proc.pid) and meta.get("http_port"):
                inst.port = int(meta["http_port"])
                break
    finally:
        await nc.close()
    return inst.port


async def health(inst: Instance) -> dict[str, Any]:
    """The instance's /healthz document, or {} when it does not answer (yet)."""
    if not await http_port(inst):
        return {}
    try:
        async with httpx.AsyncClient(timeout=0.5) as http:
            reply = await http.get(f"http://127.0.0.1:{inst.port}/healthz")
        doc: dict[str, Any] = reply.json()
        return doc
    except (httpx.HTTPError, ValueError):
        return {}


async def until_state(inst: Instance, states: tuple[str, ...], timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while (await health(inst)).get("state") not in states:
        if not inst.alive:
            raise AssertionError(f"{inst.service} exited with {inst.proc.returncode}")
        if time.monotonic() > give_up:
            raise AssertionError(f"{inst.service} not {states} within {timeout_s} s")
        await asyncio.sleep(0.05)
