"""`sim`: a GPU marketplace simulator behind the Provider Protocol.

Prices per catalog model, a boot-delay distribution, a boot failure rate,
per-model capacity, and fault injection (5xx, timeouts, 429s) as typed errors,
all from a seeded RNG so tests are reproducible. Several instances can run
side by side (`[providers.sim2] kind = "sim"`), each with its own faults and
prices; they share one SimWorld (simworld.py) that publishes their units'
telemetry, from a process of the units' own (simhost.py) unless `[sim] units =
"inline"` keeps it inside the provisioner.

Settings: `[sim]` for every instance, laid over by `[providers.<name>]`.
An instance with a state file keeps its units there, so a provisioner that
restarts (even after SIGKILL) finds the units it had, as at a real provider.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts.offers import Offer, OfferFilter
from services.provisioner.catalog import CATALOG, describe
from services.provisioner.inventory import parse_key
from services.provisioner.placement import rejection
from services.provisioner.providers.base import (
    CapacityError,
    NotFound,
    ProviderUnit,
    Retryable,
)
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.providers.simworld import Publish, SimWorld

PRICES: dict[str, float] = {
    "B200": 5.99,
    "H200": 3.49,
    "H100": 2.49,
    "A100-80GB": 1.79,
    "A100-40GB": 1.29,
    "L40S": 0.99,
    "A6000": 0.79,
    "RTX4090": 0.44,
    "RTX3090": 0.25,
    "A10": 0.60,
    "L4": 0.39,
    "T4": 0.19,
    "MI300X": 2.99,
    "RX7900XTX": 0.35,
    "Gaudi2": 1.49,
    "M2-Ultra": 0.89,
    "CPU": 0.05,
}
"""USD per hour per unit, near 2025 marketplace prices; `prices` in settings overrides."""


class SimSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One sim instance: `[sim]` with `[providers.<name>]` laid over it."""

    seed: int | None = None
    """RNG seed; set it for reproducible runs."""
    boot_delay_s: tuple[float, float] = (3.0, 10.0)
    """Boot time is uniform in [min, max] seconds; tests use [0, 0]."""
    failure_rate: float = 0.0
    """Probability (0..1) that a unit fails while booting."""
    error_rate: float = 0.0
    """Probability (0..1) that a call fails with a 5xx (Retryable)."""
    timeout_rate: float = 0.0
    """Probability (0..1) that a call times out; a timed-out create may still have
    created its units, as at a real provider."""
    rate_limit_rate: float = 0.0
    """Probability (0..1) that a call gets a 429 with Retry-After `rate_limit_after_s`."""
    rate_limit_after_s: float = 1.0
    api_latency_s: float = 0.0
    """Seconds every call takes, as a real API's round trip does."""
    timeout_s: float = 0.05
    """How long a timed-out call hangs before failing, in seconds."""
    capacity: dict[str, int] = msgspec.field(default_factory=dict)
    """Most live units per model; models not named get `default_capacity`."""
    default_capacity: int = 64
    prices: dict[str, float] = msgspec.field(default_factory=dict)
    """USD per hour per model, overriding the built-in table."""
    price_factor: float = 1.0
    """Multiplier on every price, to make one instance dearer than another."""
    reliability: float = 0.98
    region: str = "sim-1"


class SimUnit(msgspec.Struct, kw_only=True):
    """A simulated instance."""

    unit_id: str
    label: str
    pool: str
    unit: str
    gpu_model: str
    usd_per_hour: float
    created_ts: float
    ready_ts: float
    fails: bool = False
    draining: bool = False
    last_busy_ts: float = 0.0

    def status(self, now: float) -> str:
        if now < self.ready_ts:
            return "booting"
        return "failed" if self.fails else "ready"


class SimProvider:
    """A simulated marketplace; see the module docstring."""

    def __init__(
        self,
        name: str,
        settings: SimSettings | None = None,
        world: SimWorld | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or SimSettings()
        self.world = world or SimWorld()
        self.world.add(self)
        self.available = True
        self._rng = random.Random(self.settings.seed)
        self._state_file = state_file
        self._units: dict[str, SimUnit] = {}
        self._serial = 0
        self._load()

    # -- faults --------------------------------------------------------------
    async def _fault(self, op: str) -> None:
        s, roll = self.settings, self._rng.random()
        if s.api_latency_s > 0:
            await asyncio.sleep(s.api_latency_s)
        if roll < s.error_rate:
            raise Retryable(self.name, f"{op}: HTTP 503 (simulated)")
        roll -= s.error_rate
        if roll < s.rate_limit_rate:
            raise Retryable(self.name, f"{op}: HTTP 429 (simulated)", s.rate_limit_after_s)
        roll -= s.rate_limit_rate
        if roll < s.timeout_rate:
            await asyncio.sleep(s.timeout_s)
            raise _Timeout(self.name, f"{op}: timed out after {s.timeout_s:g}s (simulated)")

    # -- the Protocol ----------------------------------------------------------
    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per model, with what is left of its capacity."""
        await self._fault("offers")
        return [o for o in self._offers() if _matches(o, flt)]

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Start `count` units of the offer's model; units already labelled with the key count."""
        now = time.time()
        have = [u for u in self._units.values() if u.label == idempotency_key]
        if len(have) >= count:
            return [self._view(u, now) for u in have[:count]]
        try:
            await self._fault("create")
        except _Timeout:
            if offer.gpu_model in self._prices():
                n = min(count - len(have), self._free(offer.gpu_model))
                self._start(offer, n, idempotency_key, now)
            raise
        model = offer.gpu_model
        if offer.provider != self.name or model not in self._prices():
            raise CapacityError(self.name, f"offer {offer.offer_id} is not ours or is gone")
        free = self._free(model)
        if free <= 0:
            raise CapacityError(self.name, f"no {model} left (capacity {self._cap(model)})")
        started = self._start(offer, min(count - len(have), free), idempotency_key, now)
        return [self._view(u, now) for u in (*have, *started)]

    async def list(self) -> list[ProviderUnit]:
        """Every simulated unit that has not been destroyed."""
        await self._fault("list")
        now = time.time()
        return [self._view(u, now) for u in self._units.values()]

    async def destroy(self, unit_id: str) -> None:
        """Remove the unit; NotFound when it is already gone."""
        await self._fault("destroy")
        if self._units.pop(unit_id, None) is None:
            raise NotFound(self.name, f"unit {unit_id} does not exist")
        self._save()

    async def close(self) -> None:
        """Stop the shared telemetry task (the units stay in the state file)."""
        await self.world.stop()

    # -- hooks the provisioner uses when present ---------------------------------
    def start_telemetry(self, publish: Publish) -> None:
        """Publish telemetry for simulated units with `publish` (see simworld.py)."""
        self.world.start(publish)

    def start_jobs(self, nc: Client) -> None:
        """Let this marketplace's ready units run jobs (see simjobs.py)."""
        self.world.start_jobs(nc)

    def drain(self, unit_id: str) -> None:
        """Stop sending the unit new work; what it serves finishes within a beat."""
        unit = self._units.get(unit_id)
        if unit is not None:
            unit.draining = True
            self._save()  # the units' host reads it from the file

    def ready_units(self, now: float) -> Iterable[SimUnit]:
        """Units up at `now`, for the world's telemetry."""
        return [u for u in self._units.values() if u.status(now) == "ready"]

    # -- internals ---------------------------------------------------------------
    def _prices(self) -> dict[str, float]:
        return {**PRICES, **self.settings.prices}

    def _cap(self, model: str) -> int:
        return self.settings.capacity.get(model, self.settings.default_capacity)

    def _free(self, model: str) -> int:
        used = sum(1 for u in self._units.values() if u.gpu_model == model)
        return max(self._cap(model) - used, 0)

    def _offers(self) -> builtins.list[Offer]:
        out = []
        for model, price in sorted(self._prices().items()):
            info = CATALOG.get(model) or describe(model)
            out.append(
                Offer(
                    provider=self.name,
                    offer_id=f"{self.name}-{model}",
                    gpu_model=model,
                    vendor=info.vendor,
                    tier=info.tier,
                    vram_gb=info.vram_gb,
                    usd_per_hour=round(price * self.settings.price_factor, 4),
                    reliability=self.settings.reliability,
                    region=self.settings.region,
                    available=self._free(model),
                )
            )
        return out

    def _start(self, offer: Offer, n: int, key: str, now: float) -> builtins.list[SimUnit]:
        low, high = self.settings.boot_delay_s
        pool, unit = parse_key(key) or ("", "")
        price = round(self._prices().get(offer.gpu_model, 0.0) * self.settings.price_factor, 4)
        started = []
        for _ in range(max(n, 0)):
            self._serial += 1
            uid = f"{self.name}-{int(now * 1000) % 10**9:09d}-{self._serial}"
            ready = now + self._rng.uniform(low, max(high, low))
            started.append(
                SimUnit(
                    unit_id=uid,
                    label=key,
                    pool=pool or "unlabelled",
                    unit=(unit if n == 1 else f"{unit}-{self._serial}") if unit else uid,
                    gpu_model=offer.gpu_model,
                    usd_per_hour=price,
                    created_ts=now,
                    ready_ts=ready,
                    fails=self._rng.random() < self.settings.failure_rate,
                    last_busy_ts=ready,
                )
            )
        for u in started:
            self._units[u.unit_id] = u
        self._save()
        return started

    def _view(self, u: SimUnit, now: float) -> ProviderUnit:
        return ProviderUnit(
            provider=self.name,
            unit_id=u.unit_id,
            status=u.status(now),  # type: ignore[arg-type]
            gpu_model=u.gpu_model,
            usd_per_hour=u.usd_per_hour,
            label=u.label,
            address=f"sim://{self.name}/{u.unit_id}",
            created_ts=u.created_ts,
        )

    def _load(self) -> None:
        if self._state_file is None or not self._state_file.is_file():
            return
        try:
            rows = msgspec.json.decode(self._state_file.read_bytes(), type=list[SimUnit])
        except (OSError, msgspec.DecodeError):
            return  # a torn file loses the simulated world, never the provisioner
        self._units = {u.unit_id: u for u in rows}
        self._serial = len(rows)

    def _save(self) -> None:
        if self._state_file is None:
            return
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(list(self._units.values())))
        os.replace(tmp, self._state_file)


class _Timeout(Retryable):
    """A simulated timeout (a Retryable with no Retry-After)."""


def _matches(offer: Offer, flt: OfferFilter) -> bool:
    return rejection(offer, flt) is None


WORLD_KEYS = frozenset({"load", "telemetry_interval_s", "units", "orphan_s", "unit_capacity"})
"""`[sim]` keys the simulated world reads (services.provisioner.providers.simworld,
simhost), not one sim instance."""


def sim_settings(name: str, sim: Mapping[str, Any], section: Mapping[str, Any]) -> SimSettings:
    """Settings of sim instance `name`: `[sim]` laid over by `[providers.<name>]`."""
    merged = {k: v for k, v in sim.items() if k not in WORLD_KEYS}
    merged.update({k: v for k, v in section.items() if k not in {"kind", "base_url", "api_key"}})
    try:
        return msgspec.convert(merged, SimSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"[providers.{name}] / [sim]: {exc}") from None


def build(settings: ProviderSettings) -> SimProvider:
    """The registry's entry point: a sim instance with default settings."""
    return SimProvider(settings.name or "sim")
