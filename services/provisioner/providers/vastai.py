"""Vast.ai marketplace adapter (https://console.vast.ai, Bearer auth).

Checked against Vast's own client, vast-ai/vast-cli (`vastai/api/offers.py`,
`vastai/api/instances.py`, `vastai/api/client.py` and `vast.py` at its 2026-08-06
commit), which is the de-facto reference: docs.vast.ai documents the same calls.

- Offers: `POST /api/v0/bundles/` with Vast's filter operators, plus
  `allocated_storage` (GB): `dph_total` is priced for that disk, so the search sends
  the disk that will be rented.
- A unit is one instance rented with `PUT /api/v0/asks/{id}/`, labelled with the
  idempotency key so a retried command finds what it already rented.
- Listing pages through `GET /api/v1/instances/` (`limit`, `order_by`,
  `select_filters` as JSON in the query, `after_token` = the last page's
  `next_token`): vast-cli calls the v0 `/instances` list deprecated. Only when v1 is
  missing (404) is v0 asked.
- A configured root ending in `/api/v0` (the old default) is taken as the origin.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

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
from services.provisioner.providers.transport import HttpAdapter, as_float, body_text, json_or_none

SEARCH_LIMIT = 64
"""Offers asked for per search; the cheapest few dozen are all placement ever looks at."""

# Vast's spellings of our catalog models, for the server-side gpu_name filter.
VAST_NAMES: dict[str, list[str]] = {
    "H200": ["H200", "H200 NVL"],
    "H100": ["H100 SXM", "H100 PCIE"],
    "H100-NVL": ["H100 NVL"],
    "A100-80GB": ["A100 SXM4", "A100 PCIE", "A100X"],
    "A100-40GB": ["A100 SXM4", "A100 PCIE"],
    "RTX4090": ["RTX 4090"],
    "RTX3090": ["RTX 3090"],
    "RTX5090": ["RTX 5090"],
    "A6000": ["RTX A6000"],
    "RTX6000-ADA": ["RTX 6000Ada"],
    "L40S": ["L40S"],
    "L4": ["L4"],
    "A10": ["A10"],
    "T4": ["Tesla T4"],
    "V100": ["Tesla V100"],
}

_STATUS: dict[str, UnitStatus] = {
    "running": "ready",
    "loading": "booting",
    "created": "booting",
    "rebooting": "booting",
    "scheduling": "booting",
    "unknown": "booting",
    "stopped": "stopped",
    "exited": "stopped",
    "frozen": "stopped",
    "offline": "failed",
}


def unit_status(inst: dict[str, Any]) -> UnitStatus:
    """Our status for a Vast instance; a null actual_status means it is still being set up."""
    actual = inst.get("actual_status")
    if not actual:
        return "booting"
    return _STATUS.get(str(actual).lower(), "booting")


LIST_PAGE = 25
"""Instances per page of the v1 list, as vast-cli asks."""


def origin(base_url: str) -> str:
    """The API origin from a configured root (`.../api/v0` accepted for older configs)."""
    base = base_url.rstrip("/")
    return base[: -len("/api/v0")] if base.endswith("/api/v0") else base


def search_body(flt: OfferFilter, disk_gb: float = 20.0) -> dict[str, Any]:
    """The `/bundles/` query for `flt`: rentable on-demand offers, cheapest first, priced
    with `disk_gb` of storage (`allocated_storage`)."""
    body: dict[str, Any] = {
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "limit": SEARCH_LIMIT,
        "allocated_storage": disk_gb,
    }
    if flt.gpu_model:
        model = normalize_gpu(flt.gpu_model)
        names = VAST_NAMES.get(model or "", [flt.gpu_model.replace("_", " ")])
        body["gpu_name"] = {"eq": names[0]} if len(names) == 1 else {"in": names}
    if flt.min_vram_gb is not None:
        # gpu_ram is in MB; x1000 (not 1024) because a 24 GB card reports ~24564 MB.
        body["gpu_ram"] = {"gte": int(flt.min_vram_gb * 1000)}
    if flt.num_gpus is not None:
        body["num_gpus"] = {"gte": flt.num_gpus}
    if flt.max_usd_per_hour is not None:
        body["dph_total"] = {"lte": flt.max_usd_per_hour}
    return body


def to_offer(raw: dict[str, Any]) -> Offer | None:
    """An Offer from one `/bundles/` entry, or None when it lacks an id or a price."""
    if raw.get("id") is None or raw.get("dph_total") is None:
        return None
    vram_mb = as_float(raw.get("gpu_ram"))
    gpu = describe(str(raw.get("gpu_name") or "unknown"), round(vram_mb / 1024, 1))
    return Offer(
        provider="vastai",
        offer_id=str(raw["id"]),
        gpu_model=gpu.model,
        vendor=gpu.vendor,
        tier=gpu.tier,
        vram_gb=gpu.vram_gb,
        num_gpus=max(int(as_float(raw.get("num_gpus"), 1)), 1),
        usd_per_hour=max(as_float(raw.get("dph_total")), 0.0),
        reliability=min(max(as_float(raw.get("reliability2", raw.get("reliability")), 1.0), 0), 1),
        region=str(raw.get("geolocation") or ""),
        available=1 if raw.get("rentable", True) else 0,
    )


def to_unit(inst: dict[str, Any]) -> ProviderUnit:
    """A ProviderUnit from one Vast instance object."""
    gpu = normalize_gpu(str(inst.get("gpu_name") or "")) or str(inst.get("gpu_name") or "")
    return ProviderUnit(
        provider="vastai",
        unit_id=str(inst.get("id")),
        status=unit_status(inst),
        gpu_model=gpu,
        usd_per_hour=max(as_float(inst.get("dph_total")), 0.0),
        label=str(inst.get("label") or ""),
        address=inst.get("public_ipaddr") or None,
        created_ts=as_float(inst.get("start_date")),
    )


class VastAiProvider(HttpAdapter):
    """Rents Vast.ai marketplace offers as instances."""

    name = "vastai"

    def __init__(self, settings: ProviderSettings, transport: Any = None) -> None:
        super().__init__(
            msgspec.structs.replace(settings, base_url=origin(settings.base_url)), transport
        )

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """Rentable on-demand offers matching `flt`, cheapest first, priced for our disk."""
        body = search_body(flt, self.settings.disk_gb)
        resp = await self.http.request("POST", "/api/v0/bundles/", json=body)
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, "offer search")
        found = [to_offer(o) for o in data.get("offers") or [] if isinstance(o, dict)]
        return filter_offers([o for o in found if o is not None], flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Rent `count` instances of `offer`, labelled `idempotency_key`; reuse ones already rented.

        Vast rents one instance per call; when the offer goes (404/410) part-way, the
        instances already rented are returned, and CapacityError is raised only if none were.
        """
        return await create_missing(
            await self.list(),
            idempotency_key,
            count,
            lambda: self._rent(offer, idempotency_key),
            gone=("terminated",),
            pending=self.pending,
            provider=self.name,
        )

    def rent_body(self, label: str) -> dict[str, Any]:
        """The `PUT /asks/{id}/` body, with the fields vast-cli's create_instance sends."""
        return {
            "client_id": "me",
            "image": self.settings.image,
            "disk": self.settings.disk_gb,
            "label": label,
            "runtype": "ssh",
            "env": {},
            "cancel_unavail": True,
        }

    async def _rent(self, offer: Offer, label: str) -> ProviderUnit:
        resp = await self.http.request(
            "PUT", f"/api/v0/asks/{offer.offer_id}/", json=self.rent_body(label)
        )
        data = json_or_none(resp)
        data = data if isinstance(data, dict) else {}
        why = str(data.get("msg") or data.get("error") or body_text(resp))
        if resp.status_code in (404, 410):
            raise CapacityError(self.name, f"offer {offer.offer_id} is no longer available: {why}")
        if resp.status_code in (400, 402, 422) or not data.get("success", resp.is_success):
            low = why.lower()
            if "credit" in low or "balance" in low:
                raise QuotaExceeded(self.name, f"renting offer {offer.offer_id}: {why}")
            if "unavail" in low or "no_such_ask" in low or "not available" in low:
                raise CapacityError(self.name, f"offer {offer.offer_id}: {why}")
            raise Permanent(self.name, f"renting offer {offer.offer_id} refused: {why}")
        if not resp.is_success or data.get("new_contract") is None:
            raise self.http.unexpected(resp, f"renting offer {offer.offer_id}")
        return ProviderUnit(
            provider=self.name,
            unit_id=str(data["new_contract"]),
            status="booting",
            gpu_model=offer.gpu_model,
            usd_per_hour=offer.usd_per_hour,
            label=label,
        )

    async def instances(self) -> list[dict[str, Any]]:
        """Every instance row, page by page from the v1 list (v0 only if v1 is missing)."""
        params: dict[str, Any] = {
            "select_filters": json.dumps({}),
            "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
            "limit": LIST_PAGE,
        }
        rows: list[dict[str, Any]] = []
        for _ in range(10_000):
            resp = await self.http.request("GET", "/api/v1/instances/", params=params)
            if resp.status_code == 404 and not rows:
                return await self._instances_v0()
            data = json_or_none(resp)
            if resp.status_code != 200 or not isinstance(data, dict):
                raise self.http.unexpected(resp, "listing instances")
            rows.extend(i for i in data.get("instances") or [] if isinstance(i, dict))
            token = data.get("next_token")
            if not token:
                break
            params["after_token"] = token
        return rows

    async def _instances_v0(self) -> list[dict[str, Any]]:
        resp = await self.http.request("GET", "/api/v0/instances/", params={"owner": "me"})
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, "listing instances (v0)")
        return [i for i in data.get("instances") or [] if isinstance(i, dict)]

    async def list(self) -> list[ProviderUnit]:
        """Every instance on the account."""
        return [to_unit(i) for i in await self.instances()]

    async def get(self, unit_id: str) -> ProviderUnit:
        """One instance by id; NotFound when it is gone."""
        resp = await self.http.request("GET", f"/api/v0/instances/{unit_id}/")
        data = json_or_none(resp)
        inst = data.get("instances") if isinstance(data, dict) else None
        if resp.status_code == 404 or not inst or not isinstance(inst, dict):
            raise NotFound(self.name, f"instance {unit_id} not found")
        return to_unit(inst)

    async def destroy(self, unit_id: str) -> None:
        """Destroy instance `unit_id` (billing stops); NotFound when it is already gone."""
        resp = await self.http.request("DELETE", f"/api/v0/instances/{unit_id}/", json={})
        data = json_or_none(resp)
        data = data if isinstance(data, dict) else {}
        if resp.status_code == 404:
            raise NotFound(self.name, f"instance {unit_id} not found")
        if resp.is_success and data.get("success", True):
            return
        why = str(data.get("msg") or data.get("error") or body_text(resp))
        if "no_such" in why.lower() or "not found" in why.lower():
            raise NotFound(self.name, f"instance {unit_id}: {why}")
        raise ProviderError(self.name, f"destroying instance {unit_id} failed: {why}")


def build(settings: ProviderSettings) -> VastAiProvider:
    """The registry's constructor for this provider."""
    return VastAiProvider(settings)
