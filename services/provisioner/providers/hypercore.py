"""Hypercore adapter: Firecracker microVMs on a cluster node of your own (no auth, no prices).

Checked against Vistara-Labs/hypercore's source (`pkg/cluster/service.go` HTTP handlers,
`pkg/cluster/serf.go` spawn/stop/state broadcast, `pkg/proto/cluster.proto`; commit of
2026-01-29), which is the only reference there is.

The node speaks `/spawn` (a JSON `VmSpawnRequest`), `/stop?id=` and `/list` over HTTP and
answers `{"response": ...}` or 400 `{"error": "<Go error text>"}`; zero-valued fields are
left out of its JSON (`omitempty`), so every field is read with a default. Cost is what the
operator says a core-hour costs (`usd_per_core_hour`); the idempotency key travels as
`FLEET_LABEL=<key>` in the VM's env, which `/list` echoes in each `source_request`.

A microVM is made to order: an offer asked for with `cores`/`memory_mb` (a hosted
agent's runner) is that size, priced for it, and its offer id (`microvm-<c>c-<m>mb`)
carries the size to the spawn; without them it is `[providers.hypercore] cores,
memory_mb`. The VM's env also names the pool and unit (`FLEET_RUNNER__POOL`,
`FLEET_RUNNER__UNIT`), so a runner booted in it serves and reports as that unit.

What the source says, and how this adapter copes:
- "no suitable node found after trying all policy-selected candidates" (and "no response
  received from nodes" from the broadcast fallback) means no node has room: a
  CapacityError, so failover moves to the next provider.
- Stopping an id no node knows answers 400 "no success response received from nodes"
  (every node's error reply is ignored): when `/list` does not show the id either, the
  workload is gone, NotFound, and the destroy is done.
- `/list` answers from each node's last state broadcast, sent every 5 s: a workload
  spawned a moment ago is not in it yet. Spawns from this process are kept for
  `list_lag_s` and merged in, and a spawn whose answer was lost blocks a second spawn
  for the same key until the list can show it (`create_confirm_s`).
- `node.ip` carries a chunking marker ("<id>_complete", "_part", ...), not an address:
  it is never used as one; the spawn's `url` is the address when we have it.
"""

from __future__ import annotations

import re
import time
from typing import Any

from contracts.offers import Offer, OfferFilter
from services.provisioner.inventory import parse_key
from services.provisioner.placement import filter_offers
from services.provisioner.providers.base import (
    CapacityError,
    NotFound,
    Permanent,
    ProviderError,
    ProviderUnit,
    create_missing,
)
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.providers.transport import (
    HttpAdapter,
    as_dict,
    as_float,
    body_text,
    json_or_none,
)

LABEL_ENV = "FLEET_LABEL"

NO_ROOM = (
    "no suitable node found",
    "no response received from nodes",
)
"""Spawn errors meaning no node could take the VM (serf.go)."""

GONE = "no success response received from nodes"
"""Stop error when no node holds the workload (serf.go StopRequest)."""


def _error_text(resp: Any) -> str:
    data = json_or_none(resp)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return body_text(resp)


def offer_id(cores: int, memory_mb: int) -> str:
    """The id of the microVM offer of one size."""
    return f"microvm-{cores}c-{memory_mb}mb"


def size_of(offer: Offer) -> tuple[int, int] | None:
    """(cores, memory_mb) an offer id of ours names, or None for any other id."""
    found = _SIZE.fullmatch(offer.offer_id)
    return (int(found[1]), int(found[2])) if found else None


_SIZE = re.compile(r"microvm-(\d+)c-(\d+)mb")


def _label(source: dict[str, Any]) -> str:
    for item in source.get("env") or []:
        if isinstance(item, str) and item.startswith(f"{LABEL_ENV}="):
            return item.split("=", 1)[1]
    return ""


class HypercoreProvider(HttpAdapter):
    """Spawns microVMs (runner units) on a Hypercore node."""

    name = "hypercore"

    def __init__(self, settings: ProviderSettings, transport: Any = None) -> None:
        super().__init__(settings, transport)
        self._recent: dict[str, tuple[ProviderUnit, float]] = {}
        """Spawned here, by id, with when: shown until `/list` catches up."""
        self._urls: dict[str, str] = {}
        """Spawn `url` by id: the address, which `/list` does not carry."""

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        """Hypercore nodes take no credentials."""
        return {}

    def _offer(self, cores: int | None = None, memory_mb: int | None = None) -> Offer:
        s = self.settings
        cores, memory_mb = cores or s.cores, memory_mb or s.memory_mb
        return Offer(
            provider=self.name,
            offer_id=offer_id(cores, memory_mb),
            gpu_model="CPU",
            vendor="other",
            tier="cpu",
            vram_gb=0.0,
            num_gpus=0,
            usd_per_hour=round(cores * s.usd_per_core_hour, 6),
        )

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """The microVM of the size asked for (else the configured one), priced per
        core-hour, once the node answers."""
        await self.states()
        return filter_offers([self._offer(flt.cores, flt.memory_mb)], flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Spawn `count` microVMs of the offer's size labelled `idempotency_key`; reuse
        ones already running."""
        s = self.settings
        cores, memory_mb = size_of(offer) or (s.cores, s.memory_mb)
        return await create_missing(
            await self.list(),
            idempotency_key,
            count,
            lambda: self._spawn(idempotency_key, cores, memory_mb),
            pending=self.pending,
            provider=self.name,
        )

    def spawn_body(
        self, label: str, cores: int | None = None, memory_mb: int | None = None
    ) -> dict[str, Any]:
        """The `VmSpawnRequest` for one microVM labelled `label`, of `cores` vCPUs and
        `memory_mb` MiB (the configured size when not given)."""
        s = self.settings
        env = [f"{k}={v}" for k, v in s.env.items()]
        unit = parse_key(label)
        if unit is not None:  # a runner booted in it serves and reports as this unit
            env += [f"FLEET_RUNNER__POOL={unit[0]}", f"FLEET_RUNNER__UNIT={unit[1]}"]
            env.append(f"FLEET_RUNNER__PROVIDER={self.name}")
        return {
            "cores": cores or s.cores,
            "memory": memory_mb or s.memory_mb,
            "image_ref": s.image_ref,
            "env": [f"{LABEL_ENV}={label}", *env],
        }

    async def _spawn(self, label: str, cores: int, memory_mb: int) -> ProviderUnit:
        body = self.spawn_body(label, cores, memory_mb)
        resp = await self.http.request("POST", "/spawn", json=body)
        data = json_or_none(resp)
        if not resp.is_success:
            why = _error_text(resp)
            low = why.lower()
            size = f"a microVM of {cores} vCPUs and {memory_mb} MiB"
            if any(text in low for text in NO_ROOM):
                raise CapacityError(self.name, f"no node can take {size}: {why}")
            if resp.status_code == 400 and ("policy violation" in low or low.startswith("json:")):
                raise Permanent(self.name, f"spawn of {size} refused: {why}")
            raise ProviderError(self.name, f"spawning {size} failed: {why}")
        inner = data.get("response") if isinstance(data, dict) else None
        if not isinstance(inner, dict) or not inner.get("id"):
            raise self.http.unexpected(resp, "spawning a microVM")
        unit = ProviderUnit(
            provider=self.name,
            unit_id=str(inner["id"]),
            status="booting",
            gpu_model="CPU",
            usd_per_hour=self._offer(cores, memory_mb).usd_per_hour,
            label=label,
            address=inner.get("url") or None,
            created_ts=time.time(),
        )
        self._recent[unit.unit_id] = (unit, time.monotonic())
        if unit.address:
            self._urls[unit.unit_id] = unit.address
        return unit

    async def states(self) -> list[dict[str, Any]]:
        """The raw `/list` states (one per node, as of its last broadcast)."""
        resp = await self.http.request("GET", "/list")
        data = json_or_none(resp)
        if not resp.is_success or not isinstance(data, dict):
            raise ProviderError(self.name, f"listing microVMs failed: {_error_text(resp)}")
        inner = as_dict(data.get("response"))
        return [st for st in inner.get("states") or [] if isinstance(st, dict)]

    async def list(self) -> list[ProviderUnit]:
        """Every microVM the cluster reports, plus ones spawned here that `/list` does not
        show yet; present means running."""
        out: list[ProviderUnit] = []
        for state in await self.states():
            for wl in state.get("workloads") or []:
                if not isinstance(wl, dict) or not wl.get("id"):
                    continue
                src = as_dict(wl.get("source_request"))
                ident = str(wl["id"])
                self._recent.pop(ident, None)
                out.append(
                    ProviderUnit(
                        provider=self.name,
                        unit_id=ident,
                        status="ready",
                        gpu_model="CPU",
                        usd_per_hour=round(
                            as_float(src.get("cores")) * self.settings.usd_per_core_hour, 6
                        ),
                        label=_label(src),
                        address=self._urls.get(ident),
                    )
                )
        now = time.monotonic()
        for ident, (unit, at) in list(self._recent.items()):
            if now - at > self.settings.list_lag_s:
                self._recent.pop(ident)
            elif all(u.unit_id != ident for u in out):
                out.append(unit)
        return out

    async def destroy(self, unit_id: str) -> None:
        """Stop microVM `unit_id`; NotFound when no node has it."""
        resp = await self.http.request("POST", "/stop", params={"id": unit_id})
        if resp.is_success:
            self._recent.pop(unit_id, None)
            self._urls.pop(unit_id, None)
            return
        why = _error_text(resp)
        if GONE in why.lower() or resp.status_code == 404:
            if unit_id not in {u.unit_id for u in await self.list()}:
                raise NotFound(self.name, f"microVM {unit_id} is on no node: {why}")
        raise ProviderError(self.name, f"stopping microVM {unit_id} failed: {why}")


def build(settings: ProviderSettings) -> HypercoreProvider:
    """The registry's constructor for this provider."""
    return HypercoreProvider(settings)
