"""A local Vast.ai API (console.vast.ai/api/v0) from its documented shapes.

Bearer auth; `POST /bundles/` with filter operators; `PUT /asks/{id}/` answering
`{"success", "new_contract"}` or 404/410 when the offer is gone; `GET /instances/?owner=me`;
`GET /instances/{id}/` with the instance as an OBJECT under `instances`;
`DELETE /instances/{id}/`. Its 429 is plain text "API requests too frequent"
without Retry-After, as the real one's.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request

OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
QUERY_KEYS = {"order", "type", "limit", "allocated_storage", "disable_bundling"}
CREATE_KEYS = {
    "client_id", "image", "disk", "label", "runtype", "env", "onstart", "price",
    "target_state", "cancel_unavail", "args", "image_login", "extra",
}  # fmt: skip


def _offer(ident: int, gpu: str, n: int, ram_mb: int, dph: float, rel: float, geo: str) -> dict:
    return {
        "id": ident,
        "ask_contract_id": ident,
        "machine_id": 1000 + ident,
        "gpu_name": gpu,
        "num_gpus": n,
        "gpu_ram": ram_mb,
        "gpu_total_ram": ram_mb * n,
        "cpu_ram": 64000,
        "cpu_cores_effective": 16.0,
        "disk_space": 200.0,
        "dph_total": dph,
        "min_bid": round(dph * 0.6, 4),
        "reliability": rel,
        "reliability2": rel,
        "geolocation": geo,
        "inet_down": 900.0,
        "cuda_max_good": 12.4,
        "verified": True,
        "rentable": True,
    }


DEFAULT_OFFERS = [
    _offer(5001, "RTX 4090", 1, 24564, 0.35, 0.99, "Sweden, SE"),
    _offer(5002, "RTX 4090", 1, 24564, 0.31, 0.80, "Poland, PL"),
    _offer(5003, "H100 SXM", 1, 81559, 2.40, 0.995, "Texas, US"),
    _offer(5004, "A100 SXM4", 1, 40960, 0.90, 0.98, "Oregon, US"),
    _offer(5005, "RTX 3090", 2, 24576, 0.40, 0.97, "Quebec, CA"),
]


class VastFake(FakeProvider):
    """Vast.ai, in memory."""

    provider = "vastai"

    api_key = "vast-test-key-7f3a9c"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.offers: list[dict[str, Any]] = [dict(o) for o in DEFAULT_OFFERS]
        self.instances: dict[int, dict[str, Any]] = {}
        self.destroyed: list[int] = []
        self._ids = itertools.count(900001)

    def check_auth(self, req: Request) -> Reply | None:
        if self.bearer_ok(req):
            return None
        return Reply(
            401, {"success": False, "error": "invalid_user_key", "msg": "Invalid user key"}
        )

    def error_reply(self, status: int, req: Request) -> Reply:
        if status == 429:
            return Reply(429, text="API requests too frequent")
        if status in (404, 410):
            return Reply(status, {"success": False, "error": "no_such_ask", "msg": "gone"})
        return Reply(status, text=f"<html>{status} Server Error</html>")

    def is_create(self, req: Request) -> bool:
        return req.method == "PUT" and req.path.startswith("/asks/")

    def capacity_reply(self, req: Request) -> Reply:
        ask = req.path.strip("/").split("/")[-1]
        return Reply(
            410,
            {
                "success": False,
                "error": "no_such_ask",
                "msg": f"Instance type {ask} is no longer available.",
                "ask_id": ask,
            },
        )

    def route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        match (req.method, parts):
            case ("POST", ["bundles"]):
                return self._search(req.body)
            case ("PUT", ["asks", ask]):
                return self._create(ask, req.body)
            case ("GET", ["instances"]):
                if req.query.get("owner") != "me":
                    return Reply(400, {"success": False, "msg": "owner=me is required"})
                items = list(self.instances.values())
                return Reply(200, {"instances_found": len(items), "instances": items})
            case ("GET", ["instances", ident]):
                inst = self.instances.get(int(ident)) if ident.isdigit() else None
                if inst is None:
                    return Reply(404, {"success": False, "msg": "no_such_instance"})
                return Reply(200, {"instances": inst})
            case ("DELETE", ["instances", ident]):
                inst = self.instances.pop(int(ident), None) if ident.isdigit() else None
                if inst is None:
                    return Reply(404, {"success": False, "msg": "no_such_instance"})
                self.destroyed.append(int(ident))
                return Reply(200, {"success": True})
        return Reply(404, {"success": False, "msg": f"no route {req.method} {req.path}"})

    def _search(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return Reply(400, {"success": False, "msg": "body must be a JSON object"})
        found = []
        for offer in self.offers:
            ok = True
            for key, cond in body.items():
                if key in QUERY_KEYS:
                    continue
                if not isinstance(cond, dict) or not set(cond) <= set(OPS):
                    return Reply(400, {"success": False, "msg": f"bad filter for {key}: {cond}"})
                ok = ok and all(OPS[op](offer.get(key), v) for op, v in cond.items())
            if ok:
                found.append(offer)
        for field, direction in reversed(body.get("order") or []):
            found.sort(key=lambda o, f=field: o.get(f) or 0, reverse=direction == "desc")
        return Reply(200, {"offers": found[: int(body.get("limit") or 64)]})

    def _create(self, ask: str, body: Any) -> Reply:
        if not isinstance(body, dict) or not body.get("image"):
            return Reply(400, {"success": False, "error": "invalid_args", "msg": "image required"})
        extra = set(body) - CREATE_KEYS
        if extra:
            return Reply(400, {"success": False, "error": "invalid_args", "msg": f"{extra}"})
        offer = next((o for o in self.offers if str(o["id"]) == ask), None)
        if offer is None:
            return Reply(404, {"success": False, "error": "no_such_ask", "ask_id": ask})
        if not offer["rentable"]:
            return Reply(410, {"success": False, "error": "no_such_ask", "ask_id": ask})
        ident = next(self._ids)
        self.instances[ident] = {
            "id": ident,
            "actual_status": None,
            "intended_status": body.get("target_state", "running"),
            "cur_state": "stopped",
            "status_msg": "pulling image",
            "gpu_name": offer["gpu_name"],
            "num_gpus": offer["num_gpus"],
            "dph_total": offer["dph_total"],
            "public_ipaddr": "203.0.113.7",
            "ports": {},
            "start_date": time.time(),
            "label": body.get("label"),
            "image_uuid": body["image"],
        }
        return Reply(200, {"success": True, "new_contract": ident})

    def boot_all(self) -> None:
        """Every instance reaches actual_status `running` (what a few minutes do for real)."""
        with self.lock:
            for inst in self.instances.values():
                inst.update(actual_status="running", cur_state="running", status_msg="")
