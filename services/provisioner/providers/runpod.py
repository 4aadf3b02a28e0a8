"""RunPod adapter: pods over REST v1 (https://rest.runpod.io/v1, Bearer auth).

A unit is one pod named with the idempotency key. REST v1 has no price list,
so offers come from the `gpuTypes` GraphQL query that runpod-python's
`get_gpus()` uses (`https://api.runpod.io/graphql`, same key). When the base
URL is overridden (a proxy or a local fake) the GraphQL endpoint is taken at
the same origin, `/graphql`, unless `graphql_url` is set.

`costPerHr` arrives as a string ("0.69"); it is parsed, never trusted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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
from services.provisioner.providers.settings import DEFAULT_URLS, ProviderSettings
from services.provisioner.providers.transport import (
    HttpAdapter,
    as_dict,
    as_float,
    body_text,
    json_or_none,
)

GPU_TYPES_QUERY = (
    "query GpuTypes { gpuTypes { id displayName memoryInGb secureCloud communityCloud "
    "securePrice communityPrice } }"
)

_STATUS: dict[str, UnitStatus] = {
    "RUNNING": "ready",
    "CREATED": "booting",
    "RESTARTING": "booting",
    "EXITED": "stopped",
    "PAUSED": "stopped",
    "TERMINATED": "terminated",
    "DEAD": "failed",
}


def unit_status(pod: dict[str, Any]) -> UnitStatus:
    """Our status for a pod's desiredStatus."""
    return _STATUS.get(str(pod.get("desiredStatus") or "").upper(), "booting")


def graphql_url(settings: ProviderSettings) -> str:
    """Where GPU prices are asked for (see the module docstring)."""
    if settings.graphql_url:
        return settings.graphql_url
    if settings.base_url == DEFAULT_URLS["runpod"]:
        return "https://api.runpod.io/graphql"
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}/graphql"


def _error_text(data: Any, fallback: str) -> str:
    if isinstance(data, dict):
        err = data.get("error") or data.get("message") or data.get("errors")
        if err:
            return str(err)
    if isinstance(data, list) and data:
        return "; ".join(str(d.get("error", d)) if isinstance(d, dict) else str(d) for d in data)
    return fallback


def to_unit(pod: dict[str, Any]) -> ProviderUnit:
    """A ProviderUnit from a REST v1 Pod object."""
    gpu = as_dict(pod.get("gpu"))
    gpu_name = str(gpu.get("displayName") or gpu.get("id") or pod.get("gpuTypeId") or "")
    return ProviderUnit(
        provider="runpod",
        unit_id=str(pod.get("id")),
        status=unit_status(pod),
        gpu_model=normalize_gpu(gpu_name) or gpu_name,
        usd_per_hour=max(
            as_float(pod.get("adjustedCostPerHr")) or as_float(pod.get("costPerHr")), 0.0
        ),
        label=str(pod.get("name") or ""),
        address=pod.get("publicIp") or None,
    )


class RunPodProvider(HttpAdapter):
    """Starts RunPod GPU pods."""

    name = "runpod"

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per GPU type priced in the configured cloud, for `flt.num_gpus` cards."""
        resp = await self.http.request(
            "POST", graphql_url(self.settings), json={"query": GPU_TYPES_QUERY}
        )
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, "listing GPU types")
        if data.get("errors") and not data.get("data"):
            raise ProviderError(self.name, f"GPU types query failed: {data['errors']}")
        inner = as_dict(data.get("data"))
        secure = self.settings.cloud_type.upper() != "COMMUNITY"
        cards = flt.num_gpus or 1
        out: list[Offer] = []
        for gt in inner.get("gpuTypes") or []:
            if not isinstance(gt, dict) or not gt.get("id"):
                continue
            price = as_float(gt.get("securePrice" if secure else "communityPrice"))
            if price <= 0:
                continue  # not offered in this cloud
            gpu = describe(str(gt.get("displayName") or gt["id"]), as_float(gt.get("memoryInGb")))
            out.append(
                Offer(
                    provider=self.name,
                    offer_id=str(gt["id"]),
                    gpu_model=gpu.model,
                    vendor=gpu.vendor,
                    tier=gpu.tier,
                    vram_gb=as_float(gt.get("memoryInGb"), gpu.vram_gb) or gpu.vram_gb,
                    num_gpus=cards,
                    usd_per_hour=price * cards,
                    region="secure" if secure else "community",
                )
            )
        return filter_offers(out, flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Start `count` pods of `offer` named `idempotency_key`; reuse ones already running."""
        return await create_missing(
            await self.list(), idempotency_key, count, lambda: self._start(offer, idempotency_key)
        )

    async def _start(self, offer: Offer, name: str) -> ProviderUnit:
        body = {
            "name": name,
            "imageName": self.settings.image,
            "gpuTypeIds": [offer.offer_id],
            "gpuCount": max(offer.num_gpus, 1),
            "cloudType": self.settings.cloud_type.upper(),
            "interruptible": False,
            "containerDiskInGb": int(self.settings.disk_gb),
        }
        resp = await self.http.request("POST", "/pods", json=body)
        data = json_or_none(resp)
        if not resp.is_success:
            why = _error_text(data, body_text(resp))
            low = why.lower()
            if "instances available" in low or "no longer" in low or "capacity" in low:
                raise CapacityError(self.name, f"{offer.offer_id}: {why}")
            if resp.status_code == 402 or "balance" in low or "quota" in low:
                raise QuotaExceeded(self.name, f"starting a {offer.offer_id} pod: {why}")
            if resp.status_code in (400, 422):
                raise Permanent(self.name, f"pod for {offer.offer_id} refused: {why}")
            raise self.http.unexpected(resp, f"starting a {offer.offer_id} pod")
        if not isinstance(data, dict) or not data.get("id"):
            raise self.http.unexpected(resp, f"starting a {offer.offer_id} pod")
        unit = to_unit(data)
        if not unit.gpu_model:
            unit = msgspec.structs.replace(unit, gpu_model=offer.gpu_model)
        if not unit.usd_per_hour:
            unit = msgspec.structs.replace(unit, usd_per_hour=offer.usd_per_hour)
        return unit

    async def list(self) -> list[ProviderUnit]:
        """Every pod on the account."""
        resp = await self.http.request("GET", "/pods")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, list):
            raise self.http.unexpected(resp, "listing pods")
        return [to_unit(p) for p in data if isinstance(p, dict) and p.get("id")]

    async def get(self, unit_id: str) -> ProviderUnit:
        """One pod by id; NotFound when it is gone."""
        resp = await self.http.request("GET", f"/pods/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"pod {unit_id} not found")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self.http.unexpected(resp, f"reading pod {unit_id}")
        return to_unit(data)

    async def destroy(self, unit_id: str) -> None:
        """Terminate pod `unit_id`; NotFound when it is already gone."""
        resp = await self.http.request("DELETE", f"/pods/{unit_id}")
        if resp.status_code == 404:
            raise NotFound(self.name, f"pod {unit_id} not found")
        if not resp.is_success:
            raise self.http.unexpected(resp, f"terminating pod {unit_id}")


def build(settings: ProviderSettings) -> RunPodProvider:
    """The registry's constructor for this provider."""
    return RunPodProvider(settings)
