"""Shared pieces of the provisioner tests: settings, approved verdicts, event watching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import Alert, UnitEvent
from services.kit.config import load_settings
from services.provisioner.config import ProvisionerSettings
from tests.signing_helpers import signed_verdict, signing


def settings(
    tmp_path: Path,
    pools: dict[str, Any],
    providers: dict[str, Any] | None = None,
    sim: dict[str, Any] | None = None,
    **options: Any,
) -> ProvisionerSettings:
    """Fast timers, no real waits: boots in a fraction of a second, tiny backoffs."""
    opts = {
        "reconcile_interval_s": 2.0,
        "boot_poll_s": 0.1,
        "drain_check_s": 0.1,
        "retry_base_s": 0.01,
        "retry_max_s": 0.05,
        "command_retry_s": 0.3,
        **options,
    }
    return load_settings(
        ProvisionerSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "signing": signing("provisioner"),
            "stop_deadline_s": 2.0,
            "pools": pools,
            "providers": providers or {},
            "sim": {
                "boot_delay_s": [0.1, 0.3],
                "seed": 7,
                "telemetry_interval_s": 0,
                "units": "inline",  # no units' process per test (test_sim_units.py has one)
                **(sim or {}),
            },
            "provisioner": opts,
        },
    )


async def approve(nc: Client, cmd: ProvisionRequest | ReleaseRequest, msg_id: str = "") -> None:
    """Publish an approved Verdict for `cmd`, signed as the cost-guard signs it."""
    verdict = Verdict(id=cmd.id, decision="approved", request=cmd, command=cmd)
    body, headers = signed_verdict(verdict)
    await nc.jetstream().publish(
        subjects.BUDGET_APPROVED, body, headers={**headers, "Nats-Msg-Id": msg_id or cmd.id}
    )


class Watch:
    """Everything seen on a subject, decoded, with waiting for a condition."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    async def start(self, nc: Client, subject: str) -> Watch:
        async def on(msg: Any) -> None:
            self.items.append(msgspec.json.decode(msg.data, type=self.kind))
            self._changed.set()

        self._sub = await nc.subscribe(subject, cb=on)
        await nc.flush()
        return self

    async def until(self, pred: Callable[[list[Any]], bool], within_s: float = 15.0) -> list[Any]:
        async def loop() -> list[Any]:
            while not pred(self.items):
                self._changed.clear()
                await self._changed.wait()
            return self.items

        try:
            return await asyncio.wait_for(loop(), within_s)
        except TimeoutError:
            raise AssertionError(
                f"condition not met in {within_s}s; saw {self.items[-10:]}"
            ) from None

    async def stop(self) -> None:
        await self._sub.unsubscribe()


def states(events: list[UnitEvent], state: str) -> set[str]:
    """Units that reached `state`."""
    return {e.unit for e in events if e.state == state}


def alerts(items: list[Alert], kind: str) -> list[Alert]:
    return [a for a in items if a.kind == kind]


async def eventually(pred: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait until `pred()` holds (checked every 50 ms), or fail after `within_s`."""
    for _ in range(max(int(within_s / 0.05), 1)):
        if pred():
            return
        await asyncio.sleep(0.05)
    if not pred():
        raise AssertionError(f"condition not met in {within_s}s")
