"""Lambda Cloud adapter (https://cloud.lambda.ai/api/v1, Bearer auth); provider `lambda`.

Checked against the Lambda Cloud API OpenAPI (`servers`: `cloud.lambda.ai` production,
`cloud.lambdalabs.com` "secondary production server (deprecated)"; schemas as of the
published 1.8.x spec, read November 2026) and docs.lambda.ai/api/cloud.

Offers are instance types, one per region with capacity. A unit is one instance named
with the idempotency key. The launch request has no `quantity` (the spec lists
region_name, instance_type_name, exactly one of ssh_key_names, name, ...), so each
launch starts one instance and a retry finds the ones already up by name. Statuses:
booting, active, unhealthy, terminating, terminated, preempted (preempted is lost
capacity: the unit failed and is replaced). Errors arrive as
`{"error": {"code", "message", "suggestion"}}` and are mapped by `code`, which the spec
says to rely on rather than the message.

The key only goes to the configured host: if the old host redirects to the new one, the
redirect is refused (see transport), and the error names FLEET_LAMBDA_URL.
"""

from __future__ import annotations

import re
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
    Retryable,
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
    "booting": "booting",
    "active": "ready",
    "unhealthy": "failed",
    "terminating": "terminated",
    "terminated": "terminated",
    "preempted": "failed",
}

_VRAM = re.compile(r"(\d+(?:\.\d+)?)\s*GB", re.IGNORECASE)


def usd_per_hour(instance_type: dict[str, Any]) -> float:
    """Price of an instance type in USD/h from `price_cents_per_hour` (int or string)."""
    return max(as_float(instance_type.get("price_cents_per_hour")), 0.0) / 100.0


def gpu_of(instance_type: dict[str, Any]) -> tuple[str, float]:
    """(model, VRAM per card in GB) of an instance type, from its description or name."""
    text = str(
        instance_type.get("gpu_description")
        or instance_type.get("description")
        or instance_type.get("name")
        or ""
    )
    match = _VRAM.search(text)
    vram = float(match.group(1)) if match else 0.0
    gpu = describe(re.sub(r"^\d+x\s*", "", text), vram)
    return gpu.model, vram or gpu.vram_gb


class LambdaProvider(HttpAdapter):
    """Launches Lambda Cloud on-demand instances."""

    name = "lambda"

    def _error(self, resp: Any, what: str) -> ProviderError:
        """Our typed error for a Lambda error body, by its code."""
        data = json_or_none(resp)
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or "")
        text = str(err.get("message") or body_text(resp))
        if err.get("suggestion"):
            text += f" ({err['suggestion']})"
        if code == "global/invalid-api-key":
            return self.http.auth_error(code)
        if code.endswith("insufficient-capacity"):
            return CapacityError(self.name, f"{what}: {text}")
        if code in ("global/quota-exceeded", "global/account-inactive") or "billing" in code:
            return QuotaExceeded(self.name, f"{what}: {text}")
        if code == "global/object-does-not-exist" or resp.status_code == 404:
            return NotFound(self.name, f"{what}: {text}")
        if code == "global/too-many-requests":
            return Retryable(self.name, f"{what}: {text}")
        if resp.status_code in (400, 422) or code == "global/invalid-parameters":
            return Permanent(self.name, f"{what}: {text}")
        return ProviderError(self.name, f"{what}: HTTP {resp.status_code} {code} {text}")

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer per instance type and region with capacity; sold-out types have available=0."""
        resp = await self.http.request("GET", "/instance-types")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self._error(resp, "listing instance types")
        out: list[Offer] = []
        types = as_dict(data.get("data"))
        for key, entry in types.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("instance_type"), dict):
                continue
            it = entry["instance_type"]
            name = str(it.get("name") or key)
            model, vram = gpu_of(it)
            gpu = describe(model, vram)
            specs = as_dict(it.get("specs"))
            gpus = int(as_float(specs.get("gpus"), 1))
            if gpus == 0:
                continue  # CPU-only types are not GPU offers
            regions = [
                str(r.get("name"))
                for r in entry.get("regions_with_capacity_available") or []
                if isinstance(r, dict) and r.get("name")
            ]
            for region in regions or [""]:
                out.append(
                    Offer(
                        provider=self.name,
                        offer_id=name,
                        gpu_model=gpu.model,
                        vendor=gpu.vendor,
                        tier=gpu.tier,
                        vram_gb=vram,
                        num_gpus=gpus,
                        usd_per_hour=usd_per_hour(it),
                        region=region,
                        available=None if region else 0,
                    )
                )
        return filter_offers(out, flt)

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Launch `count` instances of `offer` named `idempotency_key`, one launch each;
        reuse ones already up. Returns what was launched when capacity runs out part-way."""
        if not offer.region:
            raise CapacityError(self.name, f"{offer.offer_id} has no region with capacity")
        return await create_missing(
            await self.list(),
            idempotency_key,
            count,
            lambda: self._launch(offer, idempotency_key),
            pending=self.pending,
            provider=self.name,
        )

    async def _launch(self, offer: Offer, name: str) -> ProviderUnit:
        body: dict[str, Any] = {
            "region_name": offer.region,
            "instance_type_name": offer.offer_id,
            "ssh_key_names": [self.settings.ssh_key_name] if self.settings.ssh_key_name else [],
            "name": name[:64],
        }
        resp = await self.http.request(
            "POST", "/instance-operations/launch", json=body, passthrough=(403,)
        )
        if not resp.is_success:
            err = self._error(resp, f"launching {offer.offer_id} in {offer.region}")
            if isinstance(err, Permanent) and not self.settings.ssh_key_name:
                raise Permanent(self.name, f"{err.message}; set ssh_key_name in [providers.lambda]")
            if isinstance(err, NotFound):  # the instance type is gone: try elsewhere
                raise CapacityError(self.name, err.message)
            raise err
        data = json_or_none(resp)
        inner = data.get("data") if isinstance(data, dict) else None
        ids = inner.get("instance_ids") if isinstance(inner, dict) else None
        if not isinstance(ids, list) or not ids:
            raise self.http.unexpected(resp, f"launching {offer.offer_id}")
        return ProviderUnit(
            provider=self.name,
            unit_id=str(ids[0]),
            status="booting",
            gpu_model=offer.gpu_model,
            usd_per_hour=offer.usd_per_hour,
            label=name,
        )

    async def list(self) -> list[ProviderUnit]:
        """Every instance on the account."""
        resp = await self.http.request("GET", "/instances")
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise self._error(resp, "listing instances")
        out = []
        for inst in data.get("data") or []:
            if not isinstance(inst, dict) or not inst.get("id"):
                continue
            it = as_dict(inst.get("instance_type"))
            model, _ = gpu_of(it) if it else ("", 0.0)
            out.append(
                ProviderUnit(
                    provider=self.name,
                    unit_id=str(inst["id"]),
                    status=_STATUS.get(str(inst.get("status") or "").lower(), "booting"),
                    gpu_model=normalize_gpu(model) or model,
                    usd_per_hour=usd_per_hour(it),
                    label=str(inst.get("name") or ""),
                    address=inst.get("ip") or None,
                )
            )
        return out

    async def destroy(self, unit_id: str) -> None:
        """Terminate instance `unit_id`; NotFound when it is already gone."""
        resp = await self.http.request(
            "POST", "/instance-operations/terminate", json={"instance_ids": [unit_id]}
        )
        if not resp.is_success:
            raise self._error(resp, f"terminating {unit_id}")
        data = json_or_none(resp)
        inner = data.get("data") if isinstance(data, dict) else None
        gone = inner.get("terminated_instances") if isinstance(inner, dict) else None
        if isinstance(gone, list) and not any(
            (g.get("id") if isinstance(g, dict) else g) == unit_id for g in gone
        ):
            raise NotFound(self.name, f"instance {unit_id} was not terminated (unknown id)")


def build(settings: ProviderSettings) -> LambdaProvider:
    """The registry's constructor for this provider."""
    return LambdaProvider(settings)
