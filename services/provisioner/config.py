"""The provisioner's settings: its own options, `[pools.*]` (the kit's `PoolConfig`), and
the raw `[providers.*]` and `[sim]` tables its providers read."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.subjects import agent_of_pool
from services.kit.config import KitSettings
from services.kit.pools import PoolConfig


class ProvisionerOptions(msgspec.Struct, kw_only=True):
    """`[provisioner]` in fleet.toml."""

    reconcile_interval_s: float = 30.0
    """Seconds between comparing the inventory with every provider's list."""
    boot_poll_s: float = 1.0
    """Seconds between polls of providers that have booting units."""
    drain_check_s: float = 1.0
    """Seconds between checks of draining units (telemetry beats every second)."""
    cleanup_check_s: float = 30.0
    """Seconds between idle-cleanup scans."""
    retry_attempts: int = 4
    """Calls per provider operation before the provider counts as failing (1 = no retry)."""
    retry_base_s: float = 0.5
    """First backoff ceiling in seconds; doubled each retry, with full jitter."""
    retry_max_s: float = 10.0
    """Largest backoff between two calls, in seconds."""
    breaker_failures: int = 5
    """Consecutive failed calls that open a provider's circuit breaker."""
    breaker_cooldown_s: float = 30.0
    """Seconds an open breaker refuses calls before one probe is let through."""
    command_retry_s: float = 15.0
    """When every provider failed transiently, seconds before the command is tried again."""
    command_attempts: int = 8
    """Tries of a command whose providers all fail transiently before it fails with an alert."""
    ack_wait_s: float = 300.0
    """JetStream ack wait for approved commands; long, since creates retry and back off."""
    crash_loop_early_s: float = 120.0
    """A unit that fails within this many seconds of its creation failed early: the second
    early failure in a row of a pool waits 5 s for its replacement, doubling after each
    (a bad image or host must not be replaced in a tight loop); a later failure is replaced
    at once."""
    adopt_orphans: bool = True
    """Take units labelled as ours that the store does not know into the inventory
    (after a lost write); off destroys them instead."""
    default_providers: list[str] = msgspec.field(default_factory=lambda: ["sim"])
    """Providers for a pool that has no `[pools.<pool>]` section."""


class ProvisionerSettings(KitSettings, kw_only=True):
    """Everything the provisioner reads from fleet.toml and FLEET_* variables."""

    provisioner: ProvisionerOptions = msgspec.field(default_factory=ProvisionerOptions)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """`[providers.<name>]` tables; `kind` picks the implementation (default: the name)."""
    sim: dict[str, Any] = msgspec.field(default_factory=dict)
    """`[sim]`: the simulated marketplace and `[sim.load.<pool>]` load patterns."""

    def pool(self, name: str) -> PoolConfig:
        """The pool's settings, or defaults with the default providers for an unknown pool.
        A hosted agent's own pool (not configured) has CPU runners from the provider its
        command names and no other: failing over to a GPU marketplace would be no runner."""
        view = self.pools.get(name)
        if view is None and agent_of_pool(name):
            return PoolConfig(gpu_model="CPU", providers=[], min=0)
        if view is None:
            return PoolConfig(providers=list(self.provisioner.default_providers))
        return view

    def provider_names(self) -> list[str]:
        """Every provider a pool or a `[providers.*]` table names, in first-seen order;
        the default providers when nothing names any."""
        names: list[str] = []
        for view in self.pools.values():
            names.extend(view.providers)
        names.extend(self.providers)
        return list(dict.fromkeys(names or self.provisioner.default_providers))
