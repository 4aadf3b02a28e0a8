"""An in-process fleet for end-to-end tests: provisioner (sim), cost-guard, watcher,
scaler and gateway (and the brain when asked), each with its own store under
`tmp_path` and fast timers, against the test's nats-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.brain.service import Brain
from services.brain.settings import BrainSettings
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from services.kit.service import Service
from services.provisioner.service import ProvisionerService
from services.scaler.service import Scaler, ScalerSettings
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from tests.provisioner_helpers import settings
from tests.signing_helpers import signing


def kit(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    """Settings overrides of one service: its store directory, a short stop deadline."""
    return {"store": {"dir": str(tmp_path / name)}, "stop_deadline_s": 1.0, **extra}


def fleet(
    nats_url: str,
    tmp_path: Path,
    pools: dict[str, Any],
    *,
    scaler: dict[str, Any] | None = None,
    watcher_pools: bool = False,
    brain: bool = False,
) -> list[Service[Any]]:
    """The services, not started; `scaler` is the `[scaler]` table, `watcher_pools`
    gives the watcher the pools (metrics before the first unit)."""
    watcher = {"watcher": {"tick_s": 0.2, "window_s": 0.2}}
    if watcher_pools:
        watcher["pools"] = pools
    services: list[Service[Any]] = [
        ProvisionerService(
            settings(tmp_path / "prov", pools, sim={"telemetry_interval_s": 0.2}),
            nats_url=nats_url,
        ),
        CostGuard(
            load_settings(
                CostguardSettings,
                env={},
                overrides=kit(
                    tmp_path,
                    "guard",
                    budget={"daily_usd": 10000, "approval_threshold_usd_per_hour": 100},
                    pools=pools,
                    signing=signing("costguard"),
                ),
            ),
            nats_url=nats_url,
        ),
        Watcher(
            load_settings(WatcherSettings, env={}, overrides=kit(tmp_path, "watcher", **watcher)),
            nats_url=nats_url,
        ),
        Scaler(
            load_settings(
                ScalerSettings,
                env={},
                overrides=kit(tmp_path, "scaler", scaler=scaler or {}, pools=pools),
            ),
            nats_url=nats_url,
        ),
        Gateway(
            load_settings(GatewaySettings, env={}, overrides=kit(tmp_path, "gw", pools=pools)),
            nats_url=nats_url,
        ),
    ]
    if brain:
        services.append(
            Brain(
                load_settings(
                    BrainSettings,
                    env={},
                    overrides=kit(tmp_path, "brain", brain={"routine_interval_s": 0}),
                ),
                nats_url=nats_url,
            )
        )
    return services
