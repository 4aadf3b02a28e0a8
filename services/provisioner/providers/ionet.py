"""io.net VMaaS adapter (https://api.io.solutions, `x-api-key` header).

Checked against io.net's API reference (io.net/docs/reference/vmaas/*, November 2026):
`get-hardware-list`, `deploy-vms`, `destroy-deployment`, `get-deployment-vms` and the
worked example `example-deploying-using-APIs`.

- A hardware item is one VM configuration: `num_cards` GPUs per VM, `price` in USD per
  hour for that configuration (the example lists an RTX 4090 at 0.3 for one card and 0.6
  for two), `location` a country code. Its `deploy_id` (int or string) is what deploy
  and pricing take as `hardware_id`; its `id` ("12__2") only keys the list.
- Deploy refuses unknown fields (`additionalProperties: false`); `vm_image_type` is
  `general` or `datascience`; `location_ids` is exactly one id or null; `gpus_per_vm`
  1..8; `duration_hours` 1..8760.
- A unit is one deployment named with the idempotency key (`resource_private_name`).

What the reference leaves open, and how this adapter copes:
- The deploy response schema is empty (`{}`) and a third-party client reports an empty
  body, so no id is expected back: the deployment is found by its name in the list. If
  it is not there yet, the create is Unconfirmed and a retry waits for it rather than
  deploying (and paying the non-refundable first hour) twice.
- Listing VMaaS deployments is not documented (the "get all deployments" page serves the
  CaaS one). `GET .../vmaas/deployments` is used with the CaaS paging (`page`,
  `page_size` <= 100) and the shape of the get-started example
  (`{"data": {"deployments": [{id, status, name, ...}], "total"}}`); when it answers 404,
  the deployments this process started are read one by one instead.
- No capacity error is documented: 400/409 and 404 on deploy (hardware gone) are taken
  as "no capacity here", so failover moves on; 422 is a request the adapter must fix.
"""

from __future__ import annotations

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
    Unconfirmed,
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
PAGE_SIZE = 100
"""Deployments asked for per page (the CaaS list's maximum)."""

_STATUS: dict[str, UnitStatus] = {
    "running": "ready",
    "deployment requested": "booting",
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


def offer_id(deploy_id: Any, cards: int, location: str) -> str:
    """`<deploy_id>/<num_cards>/<location>`: everything a deploy needs, in one offer id."""
    return f"{deploy_id}/{cards}/{location}"


def parse_offer_id(ident: str) -> tuple[int | str, int, str]:
    """(hardware_id, gpus_per_vm, location) from an offer id made by `offer_id`."""
    deploy, cards, location = ident.rsplit("/", 2)
    hw: int | str = int(deploy) if deploy.isdigit() else deploy
    return hw, int(cards) if cards.isdigit() else 1, location


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


def _deployment_id(data: Any) -> str | None:
    """A deployment id from a deploy reply, if the reply carries one at all."""
    if not isinstance(data, dict):
        return None
    inner = as_dict(data.get("data"))
    found = data.get("deployment_id") or inner.get("deployment_id") or inner.get("id")
    return str(found) if found else None


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

    async def hardware(self) -> list[dict[str, Any]]:
        """The raw hardware list (`data.hardware`)."""
        resp = await self.http.request("GET", f"{VMAAS}/hardware")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, "listing hardware")
        items = as_dict(data.get("data")).get("hardware")
        return [h for h in items or [] if isinstance(h, dict)]

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per hardware configuration (GPUs per VM, location), priced per VM."""
        out: list[Offer] = []
        for hw in await self.hardware():
            if hw.get("deploy_id") in (None, ""):
                continue
            vram = as_float(hw.get("vram_per_card"))
            gpu = describe(str(hw.get("name") or "unknown"), vram)
            cards = max(int(as_float(hw.get("num_cards"), 1)), 1)
            location = str(hw.get("location") or "")
            out.append(
                Offer(
                    provider=self.name,
                    offer_id=offer_id(hw["deploy_id"], cards, location),
                    gpu_model=gpu.model,
                    vendor=gpu.vendor,
                    tier=gpu.tier,
                    vram_gb=vram or gpu.vram_gb,
                    num_gpus=cards,
                    usd_per_hour=max(as_float(hw.get("price")), 0.0),
                    region=location,
                    available=0 if hw.get("sold_out") else None,
                )
            )
        return filter_offers(out, flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Deploy `count` VMs of `offer` named `idempotency_key`; reuse ones already deployed."""
        existing = await self.list()
        seen = {u.unit_id for u in existing if u.label == idempotency_key}
        return await create_missing(
            existing,
            idempotency_key,
            count,
            lambda: self._deploy(offer, idempotency_key, seen),
            pending=self.pending,
            provider=self.name,
        )

    def deploy_body(self, offer: Offer, name: str) -> dict[str, Any]:
        """The deploy request for `offer`, exactly as the reference's schema allows it."""
        hw_id, cards, loc = parse_offer_id(offer.offer_id)
        loc = self.settings.location_id or loc
        body: dict[str, Any] = {
            "resource_private_name": name,
            "duration_hours": min(max(self.settings.duration_hours, 1), 8760),
            "gpus_per_vm": min(max(cards, 1), 8),
            "hardware_id": hw_id,
            "location_ids": [loc] if loc else None,
            "vm_image_type": self.settings.vm_image_type,
        }
        if self.settings.ssh_public_key:
            body["ssh_keys"] = {"fleet": self.settings.ssh_public_key}
        return body

    async def _deploy(self, offer: Offer, name: str, seen: set[str]) -> ProviderUnit:
        """Deploy one VM; `seen` holds the ids already counted for `name` (same-named
        deployments are told apart by id when the reply carries none)."""
        body = self.deploy_body(offer, name)
        hw_id = body["hardware_id"]
        resp = await self.http.request("POST", f"{VMAAS}/deploy", json=body)
        data = json_or_none(resp)
        if not resp.is_success:
            why = _detail(data, body_text(resp))
            if resp.status_code == 402 or "balance" in why.lower() or "credit" in why.lower():
                raise QuotaExceeded(self.name, f"deploying hardware {hw_id}: {why}")
            if resp.status_code in (400, 404, 409, 410):
                raise CapacityError(self.name, f"hardware {hw_id} cannot be deployed now: {why}")
            if resp.status_code == 422:
                raise Permanent(self.name, f"deploy of hardware {hw_id} refused: {why}")
            raise self.http.unexpected(resp, f"deploying hardware {hw_id}")
        dep_id = _deployment_id(data)
        if dep_id is None:
            found = [u for u in await self.list() if u.label == name and u.unit_id not in seen]
            if not found:
                raise Unconfirmed(
                    self.name,
                    f"deploy of {name} was accepted without an id and is not listed yet",
                    after_s=5.0,
                )
            seen.add(found[0].unit_id)
            return with_offer_defaults(found[0], offer)
        seen.add(dep_id)
        self._started[dep_id] = name
        return ProviderUnit(
            provider=self.name,
            unit_id=dep_id,
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

    async def deployments(self) -> list[dict[str, Any]] | None:
        """Every deployment, page by page; None when the list endpoint is missing (404)."""
        found: list[dict[str, Any]] = []
        for page in range(1000):
            resp = await self.http.request(
                "GET", f"{VMAAS}/deployments", params={"page": page, "page_size": PAGE_SIZE}
            )
            if resp.status_code == 404:
                return None
            data = json_or_none(resp)
            if resp.status_code != 200 or not isinstance(data, dict):
                raise self.http.unexpected(resp, "listing deployments")
            inner = as_dict(data.get("data"))
            items = [d for d in inner.get("deployments") or [] if isinstance(d, dict)]
            found.extend(items)
            total = int(as_float(inner.get("total"), 0))
            if len(items) < PAGE_SIZE or (total and len(found) >= total):
                break
        return found

    async def list(self) -> list[ProviderUnit]:
        """Every VMaaS deployment on the account (see the module note on the endpoint)."""
        deps = await self.deployments()
        if deps is not None:
            return [self._unit(d) for d in deps]
        units = []
        for dep_id in list(self._started):
            try:
                units.append(await self.get(dep_id))
            except NotFound:
                self._started.pop(dep_id, None)
        return units

    async def destroy(self, unit_id: str) -> None:
        """Destroy deployment `unit_id`; NotFound when it is already gone."""
        resp = await self.http.request("DELETE", f"{VMAAS}/deployment/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"deployment {unit_id} not found")
        if not resp.is_success:
            why = _detail(json_or_none(resp), body_text(resp))
            raise ProviderError(self.name, f"destroying deployment {unit_id} failed: {why}")
        self._started.pop(unit_id, None)


def with_offer_defaults(unit: ProviderUnit, offer: Offer) -> ProviderUnit:
    """`unit` with the offer's model and price where the listing left them out."""
    return msgspec.structs.replace(
        unit,
        gpu_model=unit.gpu_model or offer.gpu_model,
        usd_per_hour=unit.usd_per_hour or offer.usd_per_hour,
    )


def build(settings: ProviderSettings) -> IoNetProvider:
    """The registry's constructor for this provider."""
    return IoNetProvider(settings)
