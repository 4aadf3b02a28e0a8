"""io.net VMaaS adapter (https://api.io.solutions, `x-api-key` header).

A unit is one deployment of one VM with `gpus_per_vm` cards of one hardware
type, named with the idempotency key (`resource_private_name`).

Choices where io.net's public docs are unsure, made explicit:
- `price` on a hardware entry is taken as USD per card-hour, so an offer of
  N cards costs N x price per hour. Over-estimating is the safe side for the
  budget gate if it turns out to be per VM.
- The deploy response is read as `{"status", "deployment_id"}` or
  `{"data": {"deployment_id" | "id"}}`.
- Listing uses `GET .../vmaas/deployments` (shape read tolerantly); if the
  endpoint is missing (404), the deployments this process started are looked
  up one by one instead.
"""

from __future__ import annotations

from typing import Any

from contracts.offers import Offer, OfferFilter
from services.provisioner.catalog import describe, normalize_gpu
from services.provisioner.placement import filter_offers
from services.provisioner.providers.base import (
    CapacityError,
    NotFound,
    Permanent,
    ProviderError,
    ProviderUnit,
    QuotaExceeded,
    UnitStatus,
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

VMAAS = "/enterprise/v1/io-cloud/vmaas"

_STATUS: dict[str, UnitStatus] = {
    "running": "ready",
    "deploying": "booting",
    "pending": "booting",
    "queued": "booting",
    "starting": "booting",
    "failed": "failed",
    "error": "failed",
    "completed": "terminated",
    "destroyed": "terminated",
    "terminated": "terminated",
    "termination requested": "terminated",
    "stopped": "stopped",
}


def unit_status(status: Any) -> UnitStatus:
    """Our status for an io.net deployment status (case and separators ignored)."""
    key = str(status or "").lower().replace("_", " ").replace("-", " ").strip()
    return _STATUS.get(key, "booting")


def _location(raw: Any) -> tuple[str, str]:
    """(id, name) of a hardware entry's location, whatever shape it comes in."""
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if isinstance(raw, dict):
        ident = raw.get("id", raw.get("location_id", raw.get("name", "")))
        return str(ident), str(raw.get("name") or ident)
    return (str(raw), str(raw)) if raw not in (None, "") else ("", "")


def _capacity_words(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ("sold out", "sold_out", "not enough", "no available", "capacity"))


def _detail(data: Any, resp_text: str) -> str:
    """The human part of an io.net error: `detail` as a string or a 422 list."""
    if isinstance(data, dict):
        detail = data.get("detail", data.get("message", data.get("error")))
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                if isinstance(d, dict)
                else str(d)
                for d in detail
            )
        if detail:
            return str(detail)
    return resp_text


class IoNetProvider(HttpAdapter):
    """Deploys io.net VMaaS virtual machines."""

    name = "ionet"

    def __init__(self, settings: ProviderSettings, transport: Any = None) -> None:
        super().__init__(settings, transport)
        self._started: dict[str, str] = {}
        """deployment id -> name, for listing when the list endpoint is missing."""

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        """io.net takes the key in `x-api-key`."""
        return {"x-api-key": settings.api_key} if settings.api_key else {}

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per hardware type and location, for `flt.num_gpus` cards (default 1)."""
        resp = await self.http.request("GET", f"{VMAAS}/hardware")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, "listing hardware")
        inner = as_dict(data.get("data")) or data
        cards = flt.num_gpus or 1
        out: list[Offer] = []
        for hw in inner.get("hardware") or []:
            if not isinstance(hw, dict) or hw.get("id") is None:
                continue
            gpu = describe(str(hw.get("name") or "unknown"), as_float(hw.get("vram_per_card")))
            free_cards = int(as_float(hw.get("num_cards"), 0))
            sold_out = bool(hw.get("sold_out")) or free_cards < cards
            loc_id, loc_name = _location(hw.get("location"))
            offer_id = f"{hw['id']}@{loc_id}" if loc_id else str(hw["id"])
            out.append(
                Offer(
                    provider=self.name,
                    offer_id=offer_id,
                    gpu_model=gpu.model,
                    vendor=gpu.vendor,
                    tier=gpu.tier,
                    vram_gb=as_float(hw.get("vram_per_card"), gpu.vram_gb) or gpu.vram_gb,
                    num_gpus=cards,
                    usd_per_hour=max(as_float(hw.get("price")), 0.0) * cards,
                    region=loc_name,
                    available=0 if sold_out else free_cards // cards,
                )
            )
        return filter_offers(out, flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Deploy `count` VMs of `offer` named `idempotency_key`; reuse ones already deployed."""
        return await create_missing(
            await self.list(), idempotency_key, count, lambda: self._deploy(offer, idempotency_key)
        )

    async def _deploy(self, offer: Offer, name: str) -> ProviderUnit:
        hw_id, _, loc = offer.offer_id.partition("@")
        loc = self.settings.location_id or loc
        body = {
            "resource_private_name": name,
            "duration_hours": min(max(self.settings.duration_hours, 1), 8760),
            "gpus_per_vm": min(max(offer.num_gpus, 1), 8),
            "hardware_id": int(hw_id) if hw_id.isdigit() else hw_id,
            "location_ids": [int(loc) if loc.isdigit() else loc] if loc else [],
            "ssh_keys": {"fleet": self.settings.ssh_public_key}
            if self.settings.ssh_public_key
            else {},
            "vm_image_type": self.settings.vm_image_type,
        }
        resp = await self.http.request("POST", f"{VMAAS}/deploy", json=body)
        data = json_or_none(resp)
        why = _detail(data, body_text(resp))
        if resp.status_code in (404, 409, 410) or (not resp.is_success and _capacity_words(why)):
            raise CapacityError(self.name, f"hardware {hw_id} cannot be deployed now: {why}")
        if not resp.is_success and (
            resp.status_code == 402 or "quota" in why.lower() or "balance" in why.lower()
        ):
            raise QuotaExceeded(self.name, f"deploying hardware {hw_id}: {why}")
        if resp.status_code in (400, 422):
            raise Permanent(self.name, f"deploy of hardware {hw_id} refused: {why}")
        dep_id = None
        if isinstance(data, dict):
            inner = as_dict(data.get("data"))
            dep_id = data.get("deployment_id") or inner.get("deployment_id") or inner.get("id")
        if not resp.is_success or dep_id is None:
            raise self.http.unexpected(resp, f"deploying hardware {hw_id}")
        self._started[str(dep_id)] = name
        return ProviderUnit(
            provider=self.name,
            unit_id=str(dep_id),
            status="booting",
            gpu_model=offer.gpu_model,
            usd_per_hour=offer.usd_per_hour,
            label=name,
        )

    def _unit(self, dep: dict[str, Any], unit_id: str | None = None) -> ProviderUnit:
        name = dep.get("resource_private_name") or dep.get("name") or ""
        ident = str(unit_id or dep.get("id") or dep.get("deployment_id"))
        hw = str(dep.get("hardware_name") or "")
        return ProviderUnit(
            provider=self.name,
            unit_id=ident,
            status=unit_status(dep.get("status")),
            gpu_model=normalize_gpu(hw) or hw,
            usd_per_hour=max(as_float(dep.get("amount_paid_per_hour", dep.get("price"))), 0.0),
            label=str(name or self._started.get(ident, "")),
        )

    async def get(self, unit_id: str) -> ProviderUnit:
        """One deployment's details; NotFound when it is unknown."""
        resp = await self.http.request("GET", f"{VMAAS}/deployment/{unit_id}")
        data = json_or_none(resp)
        if resp.status_code == 404:
            raise NotFound(self.name, f"deployment {unit_id} not found")
        dep = data.get("data") if isinstance(data, dict) else None
        if resp.status_code != 200 or not isinstance(dep, dict):
            raise self.http.unexpected(resp, f"reading deployment {unit_id}")
        return self._unit(dep, unit_id)

    async def vms(self, unit_id: str) -> list[dict[str, Any]]:
        """The VMs (workers) of a deployment, first page of 20."""
        resp = await self.http.request(
            "GET", f"{VMAAS}/deployment/{unit_id}/vms", params={"page": 1, "page_size": 20}
        )
        data = json_or_none(resp)
        if resp.status_code == 404:
            raise NotFound(self.name, f"deployment {unit_id} not found")
        inner = data.get("data") if isinstance(data, dict) else None
        if resp.status_code != 200 or not isinstance(inner, dict):
            raise self.http.unexpected(resp, f"listing VMs of deployment {unit_id}")
        return [w for w in inner.get("workers") or [] if isinstance(w, dict)]

    async def list(self) -> list[ProviderUnit]:
        """Every VMaaS deployment on the account (see the module note on the endpoint)."""
        resp = await self.http.request("GET", f"{VMAAS}/deployments")
        if resp.status_code == 404:
            units = []
            for dep_id in list(self._started):
                try:
                    units.append(await self.get(dep_id))
                except NotFound:
                    self._started.pop(dep_id, None)
            return units
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict | list):
            raise self.http.unexpected(resp, "listing deployments")
        items: Any = data
        if isinstance(items, dict):
            items = items.get("data", items)
        if isinstance(items, dict):
            items = items.get("deployments", items.get("items", []))
        return [self._unit(d) for d in items or [] if isinstance(d, dict)]

    async def destroy(self, unit_id: str) -> None:
        """Destroy deployment `unit_id`; NotFound when it is already gone."""
        resp = await self.http.request("DELETE", f"{VMAAS}/deployment/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"deployment {unit_id} not found")
        if not resp.is_success:
            why = _detail(json_or_none(resp), body_text(resp))
            raise ProviderError(self.name, f"destroying deployment {unit_id} failed: {why}")
        self._started.pop(unit_id, None)


def build(settings: ProviderSettings) -> IoNetProvider:
    """The registry's constructor for this provider."""
    return IoNetProvider(settings)
