"""Hypercore adapter: Firecracker microVMs on a cluster node of your own (no auth, no prices).

The node speaks `/spawn`, `/stop?id=` and `/list` over HTTP and answers
`{"response": ...}` or 400 `{"error": "..."}`. Zero-valued fields are left
out of its JSON, so every field is read with a default. Cost is what the
operator says a core-hour costs (`usd_per_core_hour`); the idempotency key
travels as `FLEET_LABEL=<key>` in the VM's env, which `/list` echoes back in
each workload's `source_request`.
"""

from __future__ import annotations

from typing import Any

from contracts.offers import Offer, OfferFilter
from services.provisioner.placement import filter_offers
from services.provisioner.providers.base import (
    CapacityError,
    NotFound,
    Permanent,
    ProviderError,
    ProviderUnit,
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


def _error_text(resp: Any) -> str:
    data = json_or_none(resp)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return body_text(resp)


def _label(source: dict[str, Any]) -> str:
    for item in source.get("env") or []:
        if isinstance(item, str) and item.startswith(f"{LABEL_ENV}="):
            return item.split("=", 1)[1]
    return ""


class HypercoreProvider(HttpAdapter):
    """Spawns microVMs (runner units) on a Hypercore node."""

    name = "hypercore"

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        """Hypercore nodes take no credentials."""
        return {}

    def _offer(self) -> Offer:
        s = self.settings
        return Offer(
            provider=self.name,
            offer_id=f"microvm-{s.cores}c-{s.memory_mb}mb",
            gpu_model="CPU",
            vendor="other",
            tier="cpu",
            vram_gb=0.0,
            num_gpus=0,
            usd_per_hour=round(s.cores * s.usd_per_core_hour, 6),
        )

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """The one microVM shape configured, priced per core-hour, once the node answers."""
        await self._list_raw()
        return filter_offers([self._offer()], flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Spawn `count` microVMs labelled `idempotency_key`; reuse ones already running."""
        units = [u for u in await self.list() if u.label == idempotency_key]
        while len(units) < count:
            try:
                units.append(await self._spawn(idempotency_key))
            except CapacityError:
                if units:
                    break
                raise
        return units[:count]

    async def _spawn(self, label: str) -> ProviderUnit:
        s = self.settings
        body = {
            "cores": s.cores,
            "memory": s.memory_mb,
            "image_ref": s.image_ref,
            "ports": {},
            "env": [f"{LABEL_ENV}={label}"],
            "dry_run": False,
        }
        resp = await self.http.request("POST", "/spawn", json=body)
        data = json_or_none(resp)
        if not resp.is_success:
            why = _error_text(resp)
            low = why.lower()
            if any(w in low for w in ("capacity", "insufficient", "no node", "resources")):
                raise CapacityError(self.name, f"spawn refused: {why}")
            if resp.status_code == 400:
                raise Permanent(self.name, f"spawn refused: {why}")
            raise self.http.unexpected(resp, "spawning a microVM")
        inner = data.get("response") if isinstance(data, dict) else None
        if not isinstance(inner, dict) or not inner.get("id"):
            raise self.http.unexpected(resp, "spawning a microVM")
        return ProviderUnit(
            provider=self.name,
            unit_id=str(inner["id"]),
            status="booting",
            gpu_model="CPU",
            usd_per_hour=self._offer().usd_per_hour,
            label=label,
            address=inner.get("url") or None,
        )

    async def _list_raw(self) -> list[dict[str, Any]]:
        resp = await self.http.request("GET", "/list")
        data = json_or_none(resp)
        if not resp.is_success or not isinstance(data, dict):
            raise ProviderError(self.name, f"listing microVMs failed: {_error_text(resp)}")
        inner = as_dict(data.get("response"))
        return [st for st in inner.get("states") or [] if isinstance(st, dict)]

    async def list(self) -> list[ProviderUnit]:
        """Every microVM on every node the cluster reports; present means running."""
        out: list[ProviderUnit] = []
        for state in await self._list_raw():
            node = as_dict(state.get("node"))
            for wl in state.get("workloads") or []:
                if not isinstance(wl, dict) or not wl.get("id"):
                    continue
                src = as_dict(wl.get("source_request"))
                cores = as_float(src.get("cores"))
                out.append(
                    ProviderUnit(
                        provider=self.name,
                        unit_id=str(wl["id"]),
                        status="ready",
                        gpu_model="CPU",
                        usd_per_hour=round(cores * self.settings.usd_per_core_hour, 6),
                        label=_label(src),
                        address=node.get("ip") or None,
                    )
                )
        return out

    async def destroy(self, unit_id: str) -> None:
        """Stop microVM `unit_id`; NotFound when the node does not know it."""
        resp = await self.http.request("POST", "/stop", params={"id": unit_id})
        if resp.is_success:
            return
        why = _error_text(resp)
        if resp.status_code == 404 or "not found" in why.lower() or "no such" in why.lower():
            raise NotFound(self.name, f"microVM {unit_id}: {why}")
        raise ProviderError(self.name, f"stopping microVM {unit_id} failed: {why}")


def build(settings: ProviderSettings) -> HypercoreProvider:
    """The registry's constructor for this provider."""
    return HypercoreProvider(settings)
