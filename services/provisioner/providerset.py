"""The providers the provisioner rents from, each behind retries and a circuit breaker.

`ProviderSet.call()` is the only way the provisioner reaches a provider: it
refuses calls while the provider's breaker is open, retries Retryable errors
with exponential backoff and full jitter (retry.py), counts provider errors,
and reports breaker transitions so the service can alert and audit them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from services.provisioner import breaker as br
from services.provisioner.config import ProvisionerSettings
from services.provisioner.providers import registry
from services.provisioner.providers.base import (
    AuthError,
    CapacityError,
    NotFound,
    Permanent,
    Provider,
    ProviderError,
    QuotaExceeded,
    Retryable,
    Unavailable,
)
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.retry import backoff_s

T = TypeVar("T")
log = logging.getLogger("fleet.provisioner")

OnTransition = Callable[[str, br.Transition, br.Breaker], Awaitable[None]]
ANSWERS = (CapacityError, NotFound)
"""Errors that prove the provider is up: they never count against its breaker."""
CONFIG = (AuthError, QuotaExceeded, Permanent, Unavailable)
"""Errors a retry will not fix; they do not open the breaker either (it is not down)."""


class BreakerOpen(Retryable):
    """The provider's breaker is open: the call was not made."""


class ProviderSet:
    """Named providers, a breaker per provider, and the retry policy."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        policy: br.BreakerPolicy,
        *,
        attempts: int = 4,
        base_s: float = 0.5,
        max_s: float = 10.0,
        on_transition: OnTransition | None = None,
        on_error: Callable[[str, ProviderError], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.policy = policy
        self.breakers: dict[str, br.Breaker] = {name: br.Breaker() for name in providers}
        self.attempts, self.base_s, self.max_s = max(attempts, 1), base_s, max_s
        self.on_transition = on_transition
        self.on_error = on_error
        self._rng = rng or random.Random()

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def usable(self, name: str, now: float | None = None) -> bool:
        """Configured here, available, and its breaker not open."""
        p = self.providers.get(name)
        if p is None or not getattr(p, "available", True):
            return False
        return not br.is_open(self.breakers[name], time.time() if now is None else now, self.policy)

    def status(self, now: float | None = None) -> dict[str, str]:
        """Each provider's state for operators: ok, breaker open, unavailable."""
        now = time.time() if now is None else now
        out = {}
        for name, p in self.providers.items():
            if not getattr(p, "available", True):
                out[name] = "unavailable (not configured)"
            else:
                out[name] = self.breakers[name].state
        return out

    async def call(
        self, name: str, fn: Callable[[Provider], Awaitable[T]], *, read_only: bool = False
    ) -> T:
        """`fn(provider)` with retries and the breaker; raises the provider's typed errors,
        BreakerOpen when the breaker refuses, Unavailable when `name` is not configured.

        `read_only` calls (offers, list) count their failures but their successes do not
        reset a closed breaker's count: a provider whose creates all fail while its reads
        work is still down for our purpose, and the reconcile timer's reads would otherwise
        keep its breaker shut forever. A read that gets through as the half-open probe
        closes it as any call does."""
        provider = self.providers.get(name)
        if provider is None:
            raise Unavailable(name, f"provider {name!r} is not configured here")
        attempt = 0
        while True:
            attempt += 1
            state, ok, moved = br.allow(self.breakers[name], time.time(), self.policy)
            await self._set(name, state, moved)
            if not ok:
                raise BreakerOpen(name, "circuit breaker open; not calling", self.policy.cooldown_s)
            try:
                result = await fn(provider)
            except ANSWERS:
                await self._set(name, *br.on_success(self.breakers[name]))
                raise
            except CONFIG as exc:
                self._error(name, exc)
                raise
            except (Retryable, TimeoutError, OSError) as exc:
                err = exc if isinstance(exc, Retryable) else Retryable(name, f"{exc!r}")
                self._error(name, err)
                state, moved = br.on_failure(self.breakers[name], time.time(), self.policy)
                await self._set(name, state, moved)
                if attempt >= self.attempts or state.state == "open":
                    raise err from exc
                delay = backoff_s(attempt, self.base_s, self.max_s, self._rng.random(), err.after_s)
                await asyncio.sleep(delay)
                continue
            if not (read_only and self.breakers[name].state == "closed"):
                await self._set(name, *br.on_success(self.breakers[name]))
            return result

    def _error(self, name: str, exc: ProviderError) -> None:
        log.warning("provider error", extra={"provider": name, "error": str(exc)[:300]})
        if self.on_error is not None:
            self.on_error(name, exc)

    async def _set(self, name: str, state: br.Breaker, moved: br.Transition | None) -> None:
        self.breakers[name] = state
        if moved is not None and self.on_transition is not None:
            try:
                await self.on_transition(name, moved, state)
            except Exception:
                log.exception("breaker transition report failed", extra={"provider": name})

    async def close(self) -> None:
        """Close every provider (connections, processes, telemetry tasks)."""
        for name, p in self.providers.items():
            try:
                await p.close()
            except Exception:
                log.exception("provider close failed", extra={"provider": name})


def build_providers(
    settings: ProvisionerSettings, state_dir: Path, nats_url: str, environ: Mapping[str, str]
) -> dict[str, Provider]:
    """Every provider the settings name. `[providers.<name>] kind` picks the implementation
    (`sim`, `local`, or a registry name); the default kind is the name itself. A bad
    setting raises ValueError naming it."""
    from services.provisioner.providers.local import LocalProvider, local_settings
    from services.provisioner.providers.sim import SimProvider, sim_settings
    from services.provisioner.providers.simhost import SimHost
    from services.provisioner.providers.simworld import SimWorld

    units = settings.sim.get("units", "process")
    if units not in ("process", "inline"):
        raise ValueError(f'[sim] units: expected "process" or "inline", got {units!r}')
    caps = {pool: v.unit_capacity for pool, v in settings.pools.items()}
    world: SimWorld | None = None
    out: dict[str, Provider] = {}
    for name in settings.provider_names():
        section: dict[str, Any] = dict(settings.providers.get(name, {}))
        kind = str(section.get("kind", name))
        if kind == "sim":
            if world is None:
                world = SimWorld.from_section(settings.sim, caps)
            cfg = sim_settings(name, settings.sim, section)
            out[name] = SimProvider(name, cfg, world, state_dir / f"sim-{name}.json")
        elif kind == "local":
            out[name] = LocalProvider(name, local_settings(name, section), state_dir, nats_url)
        else:
            section.pop("kind", None)
            out[name] = registry.build_provider(
                kind, ProviderSettings.from_env(kind, section, environ)
            )
    if world is not None and units == "process":
        sims = [n for n, p in out.items() if isinstance(p, SimProvider)]
        world.host = SimHost(state_dir, nats_url, settings.sim, caps, sims, settings.nats)
    return out
