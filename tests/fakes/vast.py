"""A local Vast.ai API (console.vast.ai), rebuilt from Vast's own client and docs.

Reference followed: vast-ai/vast-cli at its 2026-08-06 commit (`vastai/api/offers.py`
search_offers, `vastai/api/instances.py` show_instances / create_instance /
destroy_instance, `vastai/api/client.py` URL building) and docs.vast.ai's search and
instance pages (read November 2026).

- Bearer auth; 401 `{"success": false, "error": "invalid_user_key", "msg": ...}`.
- `POST /api/v0/bundles/`: the body is validated against `SEARCH_SCHEMA` (every field
  a `{op: value}` filter with Vast's operators, plus order/type/limit/
  allocated_storage). `dph_total` is priced for `allocated_storage` GB (5 when absent,
  vast-cli's default): the machine's base rate plus its `storage_cost` ($/GB/month).
- `PUT /api/v0/asks/{id}/` validates the fields vast-cli's create_instance sends
  (`CREATE_SCHEMA`; `image` required) and answers `{"success", "new_contract"}`, or
  404/410 `no_such_ask` when the offer is gone.
- `GET /api/v1/instances/` pages (`limit`, `after_token` -> `next_token`, with
  `total_instances`); the v0 list `GET /api/v0/instances/` answers 410 here
  (`v0_list_gone`), since vast-cli calls it deprecated.
- `GET /api/v0/instances/{id}/` has the instance as an OBJECT under `instances`;
  `DELETE` answers `{"success": true}`. The 429 is plain text "API requests too
  frequent" without Retry-After, as the real one's.

Left open: whether v0's list really answers 410 (some clients report it; the adapter
never asks it unless v1 is missing), whether unknown create fields are refused (the
fake ignores them, validating only the known ones), and `cur_state` vs
`actual_status` timing (the adapter keys on `actual_status`).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request, schema_errors

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
SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}},
        "type": {"enum": ["on-demand", "bid", "reserved"]},
        "limit": {"type": "integer", "minimum": 1},
        "allocated_storage": {"type": "number", "exclusiveMinimum": 0},
        "disable_bundling": {"type": "boolean"},
    },
    "additionalProperties": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"enum": list(OPS)},
    },
}
"""The search query as vast-cli's search_offers builds it."""

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "client_id": {"const": "me"},
        "image": {"type": "string", "minLength": 1},
        "env": {"type": ["object", "null"]},
        "price": {"type": ["number", "null"]},
        "disk": {"type": "number", "exclusiveMinimum": 0},
        "label": {"type": ["string", "null"]},
        "extra": {"type": ["string", "null"]},
        "onstart": {"type": ["string", "null"]},
        "image_login": {"type": ["string", "null"]},
        "python_utf8": {"type": "boolean"},
        "lang_utf8": {"type": "boolean"},
        "use_jupyter_lab": {"type": "boolean"},
        "jupyter_dir": {"type": ["string", "null"]},
        "force": {"type": "boolean"},
        "cancel_unavail": {"type": "boolean"},
        "template_hash_id": {"type": ["string", "null"]},
        "user": {"type": ["string", "null"]},
        "runtype": {"enum": ["ssh", "jupyter", "args", "ssh_direct", "ssh_proxy"]},
        "args": {"type": ["array", "string", "null"]},
        "volume_info": {"type": ["object", "null"]},
    },
}
"""The body vast-cli's create_instance sends (`PUT /asks/{id}/`)."""


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
        "dph_base": dph,
        "storage_cost": 0.1,
        "dph_total": dph,
        "min_bid": round(dph * 0.6, 4),
        "reliability": rel,
        "reliability2": rel,
        "geolocation": geo,
        "inet_down": 900.0,
        "cuda_max_good": 12.4,
        "verified": True,
        "rentable": True,
        "rented": False,
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
        self.v0_list_gone = True
        """The deprecated v0 instance list answers 410 Gone."""
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
        return req.method == "PUT" and req.path.startswith("/api/v0/asks/")

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
            case ("POST", ["api", "v0", "bundles"]):
                return self._search(req.body)
            case ("PUT", ["api", "v0", "asks", ask]):
                return self._create(ask, req.body)
            case ("GET", ["api", "v1", "instances"]):
                return self._list_v1(req.query)
            case ("GET", ["api", "v0", "instances"]):
                if self.v0_list_gone:
                    return Reply(
                        410, {"success": False, "msg": "deprecated: use /api/v1/instances/"}
                    )
                items = list(self.instances.values())
                return Reply(200, {"instances_found": len(items), "instances": items})
            case ("GET", ["api", "v0", "instances", ident]):
                inst = self.instances.get(int(ident)) if ident.isdigit() else None
                if inst is None:
                    return Reply(404, {"success": False, "msg": "no_such_instance"})
                return Reply(200, {"instances": inst})
            case ("DELETE", ["api", "v0", "instances", ident]):
                inst = self.instances.pop(int(ident), None) if ident.isdigit() else None
                if inst is None:
                    return Reply(404, {"success": False, "msg": "no_such_instance"})
                self.destroyed.append(int(ident))
                return Reply(200, {"success": True})
        return Reply(404, {"success": False, "msg": f"no route {req.method} {req.path}"})

    def _list_v1(self, query: dict[str, str]) -> Reply:
        try:
            limit = int(json.loads(query.get("limit", "25")))
            json.loads(query.get("select_filters", "{}"))
            json.loads(query.get("order_by", "[]"))
        except (ValueError, TypeError):
            return Reply(400, {"success": False, "msg": "query values must be JSON"})
        items = sorted(self.instances.values(), key=lambda i: i["id"])
        after = query.get("after_token")
        if after:
            items = [i for i in items if i["id"] > int(after.removeprefix("tok"))]
        page = items[:limit]
        more = len(items) > limit
        return Reply(
            200,
            {
                "instances": page,
                "next_token": f"tok{page[-1]['id']}" if more else None,
                "total_instances": len(self.instances),
                "label_counts": {},
            },
        )

    def _search(self, body: Any) -> Reply:
        errors = schema_errors(SEARCH_SCHEMA, body)
        if errors:
            return Reply(400, {"success": False, "error": "invalid_args", "msg": errors[0]})
        storage = float(body.get("allocated_storage", 5.0))
        priced = [
            {**o, "dph_total": round(o["dph_base"] + o["storage_cost"] * storage / 730, 6)}
            for o in self.offers
        ]
        found = []
        for offer in priced:
            if all(
                OPS[op](offer.get(key), v)
                for key, cond in body.items()
                if key not in QUERY_KEYS
                for op, v in cond.items()
            ):
                found.append(offer)
        for field, direction in reversed(body.get("order") or []):
            found.sort(key=lambda o, f=field: o.get(f) or 0, reverse=direction == "desc")
        return Reply(200, {"offers": found[: int(body.get("limit") or 64)]})

    def _create(self, ask: str, body: Any) -> Reply:
        errors = schema_errors(CREATE_SCHEMA, body)
        if errors:
            return Reply(400, {"success": False, "error": "invalid_args", "msg": errors[0]})
        offer = next((o for o in self.offers if str(o["id"]) == ask), None)
        if offer is None:
            return Reply(404, {"success": False, "error": "no_such_ask", "ask_id": ask})
        if not offer["rentable"]:
            return Reply(410, {"success": False, "error": "no_such_ask", "ask_id": ask})
        ident = next(self._ids)
        self.instances[ident] = {
            "id": ident,
            "actual_status": None,
            "intended_status": "running",
            "cur_state": "stopped",
            "status_msg": "pulling image",
            "gpu_name": offer["gpu_name"],
            "num_gpus": offer["num_gpus"],
            "dph_total": offer["dph_base"],
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
