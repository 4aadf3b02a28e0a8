"""The provisioner's settings: its own options, `[pools.*]` (the kit's `PoolConfig`), and
the raw `[providers.*]` and `[sim]` tables its providers read."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import msgspec

from contracts.base import NonNegative, Positive, Tries
from contracts.subjects import agent_of_pool
from services.kit.config import KitSettings, unknown_message
from services.kit.errors import ConfigError
from services.kit.pools import PoolConfig
from services.kit.settings_keys import field_types


class ProvisionerOptions(msgspec.Struct, kw_only=True):
    """`[provisioner]` in fleet.toml."""

    reconcile_interval_s: Positive = 30.0
    """Seconds between comparing the inventory with every provider's list."""
    boot_poll_s: Positive = 1.0
    """Seconds between polls of providers that have booting units."""
    drain_check_s: Positive = 1.0
    """Seconds between checks of draining units (telemetry beats every second)."""
    cleanup_check_s: Positive = 30.0
    """Seconds between idle-cleanup scans."""
    retry_attempts: Tries = 4
    """Calls per provider operation before the provider counts as failing (1 = no retry)."""
    retry_base_s: NonNegative = 0.5
    """First backoff ceiling in seconds; doubled each retry, with full jitter."""
    retry_max_s: NonNegative = 10.0
    """Largest backoff between two calls, in seconds."""
    breaker_failures: Tries = 5
    """Consecutive failed calls that open a provider's circuit breaker."""
    breaker_cooldown_s: NonNegative = 30.0
    """Seconds an open breaker refuses calls before one probe is let through."""
    command_retry_s: Positive = 15.0
    """When every provider failed transiently, seconds before the command is tried again."""
    command_attempts: Tries = 8
    """Tries of a command whose providers all fail transiently before it fails with an alert."""
    ack_wait_s: Positive = 300.0
    """JetStream ack wait for approved commands; long, since creates retry and back off."""
    crash_loop_early_s: NonNegative = 120.0
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

    def _check_provider_kinds(self) -> None:
        """Every provider a pool, `[provisioner] default_providers` or a `[providers.*]`
        table names must be one the provisioner can build (its `kind`, default its name)."""
        from services.provisioner.providers.registry import known_providers

        known = known_providers()
        named = [(f"pools.{p}.providers", n) for p, v in self.pools.items() for n in v.providers]
        named += [("provisioner.default_providers", n) for n in self.provisioner.default_providers]
        named += [(f"providers.{n}", n) for n in self.providers]
        for where, name in named:
            kind = str(self.providers.get(name, {}).get("kind", name))
            if kind in known:
                continue
            close = difflib.get_close_matches(kind, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            if name in self.providers:
                raise ConfigError(
                    f"providers.{name}.kind: unknown provider {kind!r}; {guess}"
                    f"known providers: {', '.join(known)}"
                )
            raise ConfigError(
                f"{where}: unknown provider {name!r}; {guess}known providers: "
                f"{', '.join(known)}, or a [providers.{name}] table whose kind is one of them"
            )

    def validate(self, environ: Mapping[str, str]) -> None:
        """Every `[providers.<name>]` table and `[sim]` (with `[sim.load.<pool>]`) as the
        providers will read them: an unknown key names the closest valid one, a bad value
        its key, before anything starts; the providers are not built."""
        from services.provisioner.providers.local import LocalSettings, local_settings
        from services.provisioner.providers.settings import ProviderSettings
        from services.provisioner.providers.sim import WORLD_KEYS, SimSettings, sim_settings
        from services.provisioner.providers.simworld import LoadPattern

        origin = "fleet.toml or its FLEET_* variables"
        self._check_provider_kinds()
        own = {"kind", "base_url", "api_key"}
        sims = {*field_types(SimSettings), *WORLD_KEYS}
        for key in self.sim:
            if key not in sims:
                raise ConfigError(unknown_message(("sim", key), sorted(sims), origin))
        loads = self.sim.get("load", {})
        for pool, pattern in (loads if isinstance(loads, dict) else {}).items():
            for key in pattern if isinstance(pattern, dict) else {}:
                if key not in field_types(LoadPattern):
                    path = ("sim", "load", pool, key)
                    raise ConfigError(
                        unknown_message(path, sorted(field_types(LoadPattern)), origin)
                    )
        for name, section in self.providers.items():
            kind = str(section.get("kind", name))
            if kind in ("sim", "local"):
                keys = {*field_types(SimSettings if kind == "sim" else LocalSettings), *own}
            else:  # what ProviderSettings.from_env reads; it sets `name` and `key_source`
                keys = {*field_types(ProviderSettings), "kind", "api_key_file"}
                keys -= {"name", "key_source"}
            for key in section:
                if key not in keys:
                    raise ConfigError(
                        unknown_message(("providers", name, key), sorted(keys), origin)
                    )
            try:
                if kind == "sim":
                    sim_settings(name, self.sim, section)
                elif kind == "local":
                    local_settings(name, section)
                else:
                    rest = {k: v for k, v in section.items() if k != "kind"}
                    ProviderSettings.from_env(kind, rest, environ)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        try:
            msgspec.convert(loads, dict[str, LoadPattern], strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"[sim.load]: {exc}") from None
