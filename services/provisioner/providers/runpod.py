"""RunPod adapter: pods over REST v2 (https://api.runpod.io, paths under `/v2`, Bearer auth).

Checked against RunPod's REST v2 OpenAPI (docs.runpod.io/api-reference-v2, `openapi.json`
2.0.0 as published in runpod/docs on 2026-08-20) and its "migrate from v1" page. REST v1
(rest.runpod.io/v1) is retired in November 2026 and the GraphQL price query is deprecated,
so neither is used.

- Offers: `GET /v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud=..&count=..`
  -> `{"gpus": [GpuType]}`; `price.secure` / `price.community` are USD per GPU-hour,
  `availability` NONE|LOW|MEDIUM|HIGH (NONE is sold out), `maxCount` caps GPUs per pod.
- A unit is one pod named with the idempotency key: `POST /v2/pods` with `name`, `image`,
  `gpu {id, count}`, `cloud`, `disk`; unknown fields are refused (422). The pod starts in
  PROVISIONING, then STARTING, then RUNNING once its container is healthy: only RUNNING
  is ready (v1's `desiredStatus` was the intended state, never mapped to ready here).
- Create failures, as the reference's table says: 400 = rule broken or no capacity for
  this GPU ("try your next candidate") -> CapacityError; 402 = no balance ->
  QuotaExceeded; 403 = this pool is not open to the account -> CapacityError (skip);
  422 = the body breaks the contract -> Permanent. Errors are problem+json
  `{title, status, detail, errors[]}`.

Left open: the text of a capacity 400 (the reference says only that it has no
machine-readable code), and whether `GET /v2/pods` pages (the spec has no paging
parameters, so none are sent). `cost` is the billed USD/h of the pod.
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

_STATUS: dict[str, UnitStatus] = {
    "PROVISIONING": "booting",
    "STARTING": "booting",
    "RUNNING": "ready",
    "EXITED": "stopped",
    "ERROR": "failed",
    "TERMINATED": "terminated",
}


def unit_status(pod: dict[str, Any]) -> UnitStatus:
    """Our status for a v2 pod `status` (an unknown one is taken as still booting)."""
    return _STATUS.get(str(pod.get("status") or "").upper(), "booting")


def problem(data: Any, fallback: str) -> str:
    """The readable part of a problem+json body: `detail` and each validation error."""
    if isinstance(data, dict):
        parts = [str(data.get("detail") or data.get("title") or "")]
        parts += [str(e) for e in data.get("errors") or []]
        text = "; ".join(p for p in parts if p)
        if text:
            return text
    return fallback


def to_unit(pod: dict[str, Any]) -> ProviderUnit:
    """A ProviderUnit from a REST v2 Pod object."""
    gpu_id = str(as_dict(pod.get("gpu")).get("id") or "")
    return ProviderUnit(
        provider="runpod",
        unit_id=str(pod.get("id")),
        status=unit_status(pod),
        gpu_model=normalize_gpu(gpu_id) or gpu_id,
        usd_per_hour=max(as_float(pod.get("cost")), 0.0),
        label=str(pod.get("name") or ""),
    )


class RunPodProvider(HttpAdapter):
    """Starts RunPod GPU pods."""

    name = "runpod"

    @property
    def cloud(self) -> str:
        """SECURE or COMMUNITY, as configured."""
        return "COMMUNITY" if self.settings.cloud_type.upper() == "COMMUNITY" else "SECURE"

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per GPU type sold in the configured cloud, for `flt.num_gpus` cards."""
        cards = flt.num_gpus or 1
        params = {"include": "AVAILABILITY", "product": "POD", "cloud": self.cloud, "count": cards}
        resp = await self.http.request("GET", "/v2/catalog/gpus", params=params)
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise ProviderError(
                self.name, f"listing GPU types: HTTP {resp.status_code}: {problem(data, '')}"
            )
        key = self.cloud.lower()
        out: list[Offer] = []
        for gt in data.get("gpus") or []:
            if not isinstance(gt, dict) or not gt.get("id") or not gt.get(key):
                continue
            price = as_float(as_dict(gt.get("price")).get(key))
            ceiling = as_dict(gt.get("maxCount")).get(key)
            if price <= 0 or (ceiling is not None and as_float(ceiling) < cards):
                continue
            memory = as_float(gt.get("memory"))
            gpu = describe(str(gt.get("name") or gt["id"]), memory)
            vendor = gt.get("manufacturer") if gt.get("manufacturer") in ("NVIDIA", "AMD") else None
            out.append(
                Offer(
                    provider=self.name,
                    offer_id=str(gt["id"]),
                    gpu_model=gpu.model,
                    vendor=vendor or gpu.vendor,
                    tier=gpu.tier,
                    vram_gb=memory or gpu.vram_gb,
                    num_gpus=cards,
                    usd_per_hour=round(price * cards, 6),
                    region=key,
                    available=0 if gt.get("availability") == "NONE" else None,
                )
            )
        return filter_offers(out, flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Start `count` pods of `offer` named `idempotency_key`; reuse ones already there."""
        return await create_missing(
            await self.list(),
            idempotency_key,
            count,
            lambda: self._start(offer, idempotency_key),
            pending=self.pending,
            provider=self.name,
        )

    def pod_body(self, offer: Offer, name: str) -> dict[str, Any]:
        """The `CreatePodRequest` for one pod of `offer`."""
        return {
            "name": name,
            "image": self.settings.image,
            "gpu": {"id": offer.offer_id, "count": max(offer.num_gpus, 1)},
            "cloud": self.cloud,
            "disk": max(int(self.settings.disk_gb), 1),
        }

    async def _start(self, offer: Offer, name: str) -> ProviderUnit:
        resp = await self.http.request(
            "POST", "/v2/pods", json=self.pod_body(offer, name), passthrough=(403,)
        )
        data = json_or_none(resp)
        if not resp.is_success:
            why = problem(data, body_text(resp))
            what = f"a {offer.offer_id} pod"
            if resp.status_code == 402:
                raise QuotaExceeded(self.name, f"starting {what}: {why}")
            if resp.status_code in (400, 403, 404):
                raise CapacityError(self.name, f"{what} could not be placed: {why}")
            if resp.status_code == 422:
                raise Permanent(self.name, f"{what} refused: {why}")
            raise self.http.unexpected(resp, f"starting {what}")
        if not isinstance(data, dict) or not data.get("id"):
            raise self.http.unexpected(resp, f"starting a {offer.offer_id} pod")
        unit = to_unit(data)
        return msgspec.structs.replace(
            unit,
            gpu_model=unit.gpu_model or offer.gpu_model,
            usd_per_hour=unit.usd_per_hour or offer.usd_per_hour,
        )

    async def list(self) -> list[ProviderUnit]:
        """Every pod on the account."""
        resp = await self.http.request("GET", "/v2/pods")
        data = json_or_none(resp)
        pods = data.get("pods") if isinstance(data, dict) else None
        if resp.status_code != 200 or not isinstance(pods, list):
            raise self.http.unexpected(resp, "listing pods")
        return [to_unit(p) for p in pods if isinstance(p, dict) and p.get("id")]

    async def get(self, unit_id: str) -> ProviderUnit:
        """One pod by id; NotFound when it is gone."""
        resp = await self.http.request("GET", f"/v2/pods/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"pod {unit_id} not found")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, f"reading pod {unit_id}")
        return to_unit(data)

    async def destroy(self, unit_id: str) -> None:
        """Terminate pod `unit_id`; NotFound when it is already gone."""
        resp = await self.http.request("DELETE", f"/v2/pods/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"pod {unit_id} not found")
        if not resp.is_success:
            why = problem(json_or_none(resp), body_text(resp))
            raise ProviderError(self.name, f"terminating pod {unit_id}: {why}")


def build(settings: ProviderSettings) -> RunPodProvider:
    """The registry's constructor for this provider."""
    return RunPodProvider(settings)
