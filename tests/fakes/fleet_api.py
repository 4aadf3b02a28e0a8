"""Stand-ins for the fleet.api operations other services own, and for the cost-guard.

`FakeFleetOwners` answers `fleet.api.pools|budget|units.list|gpus.available|place`
with fixed data and judges `fleet.provision.requested` / `fleet.release.requested`
like a tiny cost-guard: approve while the day's added burn stays under
`budget_usd_per_hour`, deny otherwise, publishing Verdicts on `fleet.budget.*`.
With `judge=False` it leaves `budget` and the commands to a real cost-guard, for
tests whose point is a rule the cost-guard enforces.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict, command_decoder

OFFERS = [
    {
        "provider": "sim",
        "offer_id": "sim-h100",
        "gpu_model": "H100",
        "vendor": "NVIDIA",
        "tier": "enterprise",
        "vram_gb": 80.0,
        "num_gpus": 1,
        "usd_per_hour": 4.0,
    },
    {
        "provider": "sim",
        "offer_id": "sim-a100",
        "gpu_model": "A100-80GB",
        "vendor": "NVIDIA",
        "tier": "enterprise",
        "vram_gb": 80.0,
        "num_gpus": 1,
        "usd_per_hour": 1.8,
    },
    {
        "provider": "sim",
        "offer_id": "sim-l40s",
        "gpu_model": "L40S",
        "vendor": "NVIDIA",
        "tier": "high_end",
        "vram_gb": 48.0,
        "num_gpus": 1,
        "usd_per_hour": 0.9,
    },
    {
        "provider": "sim",
        "offer_id": "sim-4090",
        "gpu_model": "RTX4090",
        "vendor": "NVIDIA",
        "tier": "high_end",
        "vram_gb": 24.0,
        "num_gpus": 1,
        "usd_per_hour": 0.4,
    },
]


class FakeFleetOwners:
    """See the module docstring."""

    def __init__(
        self, nc: Client, *, budget_usd_per_hour: float = 20.0, judge: bool = True
    ) -> None:
        self.nc = nc
        self.judge = judge
        """False when a real cost-guard judges commands and answers `budget`."""
        self.budget_usd_per_hour = budget_usd_per_hour
        self.burn = 0.0
        self.requests: list[ProvisionRequest | ReleaseRequest] = []
        self.verdicts: list[Verdict] = []
        self.units: list[dict[str, Any]] = [
            {
                "unit": "u-idle",
                "pool": "llm",
                "provider": "sim",
                "state": "ready",
                "gpu_model": "L40S",
                "usd_per_hour": 0.9,
                "idle_s": 7200.0,
                "provider_unit_id": "sim-7001",
            },
            {
                "unit": "u-busy",
                "pool": "llm",
                "provider": "sim",
                "state": "ready",
                "gpu_model": "L40S",
                "usd_per_hour": 0.9,
                "idle_s": 3.0,
                "provider_unit_id": "sim-7002",
            },
        ]
        self._subs: list[Any] = []
        self._dec = command_decoder()

    def add_unit(self, unit: str, provider: str, provider_unit_id: str) -> None:
        """A busy ready L40S unit of pool `llm` at `provider`, known there by its own id."""
        self.units.append(
            {
                "unit": unit,
                "pool": "llm",
                "provider": provider,
                "state": "ready",
                "gpu_model": "L40S",
                "usd_per_hour": 0.9,
                "idle_s": 0.0,
                "provider_unit_id": provider_unit_id,
            }
        )

    async def start(self) -> FakeFleetOwners:
        routes = {
            "pools": self._pools,
            "units.list": self._units,
            "gpus.available": self._offers,
            "place": self._place,
        }
        if self.judge:
            routes["budget"] = self._budget
        for op, fn in routes.items():
            self._subs.append(await self.nc.subscribe(subjects.api(op), cb=_responder(fn)))
        for subject in (subjects.PROVISION_REQUESTED, subjects.RELEASE_REQUESTED):
            if self.judge:
                self._subs.append(await self.nc.subscribe(subject, cb=self._judge))
        await self.nc.flush()
        return self

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()

    def _pools(self, _q: dict[str, Any]) -> dict[str, Any]:
        return {
            "pools": [
                {
                    "metrics": {
                        "pool": "llm",
                        "units_ready": 2,
                        "units_pending": 0,
                        "inflight": 3.0,
                        "capacity": 8.0,
                        "queue_depth": 0.0,
                        "utilization": 0.375,
                        "arrival_rate": 1.5,
                    }
                }
            ]
        }

    def _budget(self, _q: dict[str, Any]) -> dict[str, Any]:
        return {
            "daily_usd": 100.0,
            "hard_cap_usd": 100.0,
            "spent_today_usd": 12.5,
            "burn_usd_per_hour": 1.8 + self.burn,
            "projected_today_usd": 40.0,
            "held": [],
        }

    def _units(self, q: dict[str, Any]) -> dict[str, Any]:
        rows = [
            u
            for u in self.units
            if q.get("pool") in (None, u["pool"]) and q.get("provider") in (None, u["provider"])
        ]
        return {"units": rows, "count": len(rows)}

    def _offers(self, q: dict[str, Any]) -> dict[str, Any]:
        rows = [
            o
            for o in OFFERS
            if q.get("gpu_model") in (None, o["gpu_model"])
            and o["vram_gb"] >= float(q.get("min_vram_gb") or 0)
            and o["usd_per_hour"] <= float(q.get("max_usd_per_hour") or 1e9)
        ]
        return {"offers": sorted(rows, key=lambda o: o["usd_per_hour"])}

    def _place(self, q: dict[str, Any]) -> dict[str, Any]:
        rows = self._offers(q)["offers"]
        if not rows:
            return {"ok": False, "reasoning": "no offer has that much VRAM"}
        return {
            "ok": True,
            "offer": rows[0],
            "alternatives": rows[1:3],
            "reasoning": f"cheapest of {len(rows)} offers with enough VRAM",
        }

    async def _judge(self, msg: Msg) -> None:
        cmd = self._dec.decode(msg.data)
        assert isinstance(cmd, ProvisionRequest | ReleaseRequest)
        self.requests.append(cmd)
        if isinstance(cmd, ProvisionRequest):
            # "A100" names the family, as the guide does: any A100 offer prices it.
            price = min(
                o["usd_per_hour"]
                for o in OFFERS
                if cmd.gpu_model == "any" or o["gpu_model"].startswith(cmd.gpu_model)
            )
            cost = price * cmd.count
            ok = self.burn + cost <= self.budget_usd_per_hour
            reason = (
                f"{cmd.count} x ${price}/h fits"
                if ok
                else f"{cmd.count} x ${price}/h = ${cost}/h is over ${self.budget_usd_per_hour}/h"
            )
            if ok:
                self.burn += cost
        else:
            cost, ok, reason = 0.9, True, "releases save money"
        verdict = Verdict(
            id=cmd.id,
            decision="approved" if ok else "denied",
            request=cmd,
            usd_per_hour=cost,
            budget_usd=100.0,
            reason=reason,
        )
        self.verdicts.append(verdict)
        await self.nc.jetstream().publish(
            subjects.budget(verdict.decision), msgspec.json.encode(verdict)
        )


def _responder(fn: Any) -> Any:
    async def cb(msg: Msg) -> None:
        q = msgspec.json.decode(msg.data or b"{}")
        await msg.respond(msgspec.json.encode(fn(q if isinstance(q, dict) else {})))

    return cb
