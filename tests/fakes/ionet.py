"""A local io.net VMaaS API (api.io.solutions), rebuilt from io.net's published reference.

Reference followed (read November 2026): io.net/docs/reference/vmaas/get-hardware-list,
/deploy-vms, /destroy-deployment, /get-deployment-vms, /example-deploying-using-APIs and
/get-started-with-vmaas-api (the deployments-list example).

- `x-api-key` header; without a valid one, 401 `{"detail": ...}` (FastAPI's shape, as the
  422 `HTTPValidationError` in the reference).
- `GET .../vmaas/hardware` -> `{"data": {"hardware": [HardwareItem]}}`: items as in the
  worked example (`id` "12__2" to key the list, `deploy_id` 12 to deploy with,
  `num_cards` GPUs per VM, `price` USD/h for that configuration, `location` "US").
- `POST .../vmaas/deploy` is validated against `DEPLOY_SCHEMA`, written from the
  reference's `VMaasDeployRequest`: `additionalProperties: false`, the four required
  fields, `vm_image_type` in {general, datascience}, `location_ids` one item or null.
  Violations answer 422 `{"detail": [{loc, msg, type}]}`. A `hardware_id` that is no
  hardware's `deploy_id` (such as an item's `id`) answers 404 "Not found".
- The deploy answer is an empty 200 body by default: the reference's response schema is
  `{}` and a third-party client reports an empty body (`deploy_reply` overrides it).

Left open by the reference, chosen here and coped with by the adapter:
- No capacity error is documented: a sold-out configuration answers 400 with a `detail`
  string (the adapter treats 400/404 on deploy as "no capacity here" and fails over).
- Listing VMaaS deployments is undocumented: `GET .../vmaas/deployments` answers the
  get-started example's shape with CaaS paging (`page` from 0, `page_size` <= 100); off
  with `list_endpoint=False` (the adapter then reads the deployments it started).
- Deployment details and statuses follow the CaaS page the VMaaS one redirects to
  (statuses: deployment requested, running, completed, failed, termination requested,
  destroyed).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request, schema_errors

VMAAS = "/enterprise/v1/io-cloud/vmaas"

DEPLOY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["resource_private_name", "duration_hours", "gpus_per_vm", "hardware_id"],
    "properties": {
        "ssh_keys": {
            "anyOf": [
                {"type": "object", "additionalProperties": {"type": "string"}},
                {"type": "null"},
            ]
        },
        "resource_private_name": {"type": "string"},
        "node_pool_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "duration_hours": {"type": "integer", "exclusiveMinimum": 0, "maximum": 8760},
        "gpus_per_vm": {"type": "integer", "minimum": 1, "maximum": 8},
        "hardware_id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "location_ids": {
            "anyOf": [
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                },
                {"type": "null"},
            ]
        },
        "vms_qty": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "github_ids": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "vm_image_type": {"enum": ["general", "datascience"]},
        "network_services": {"type": "object"},
    },
}
"""`VMaasDeployRequest` from the deploy-vms reference page."""


def _hw(ident: str, deploy_id: int | str, name: str, cards: int, price: float, vram: int,
        location: str, sold_out: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "id": ident,
        "deploy_id": deploy_id,
        "name": name,
        "num_cards": cards,
        "supplier": "internal",
        "sold_out": sold_out,
        "price": price,
        "vram_per_card": vram,
        "interconnect": None,
        "nvlink": False,
        "storage": 500 * cards,
        "vcpu": 16 * cards,
        "memory": 64 * cards,
        "location": location,
    }


DEFAULT_HARDWARE = [
    _hw("101__1", 101, "H100 80GB HBM3", 1, 1.99, 80, "US"),
    _hw("101__2", 101, "H100 80GB HBM3", 2, 3.98, 80, "US"),
    _hw("102__1", 102, "A100 80GB PCIe", 1, 1.19, 80, "FI"),
    _hw("12__1", 12, "GeForce RTX 4090", 1, 0.3, 24, "US", sold_out=True),
]


def _detail(errors: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in errors:
        loc, _, msg = line.partition(": ")
        out.append({"loc": ["body", *loc.split(".")], "msg": msg, "type": "value_error"})
    return out


def _public(dep: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dep.items() if not k.startswith("_")}


class IoNetFake(FakeProvider):
    """io.net VMaaS, in memory."""

    provider = "ionet"

    api_key = "io-test-key-51c0d2"

    def __init__(
        self,
        api_key: str | None = None,
        deploy_reply: Any = None,
        list_endpoint: bool = True,
    ) -> None:
        super().__init__(api_key)
        self.hardware: list[dict[str, Any]] = [dict(h) for h in DEFAULT_HARDWARE]
        self.deployments: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []
        self.deploy_reply = deploy_reply
        """None: an empty 200 body; else a callable(dep_id) -> JSON body."""
        self.list_endpoint = list_endpoint
        self._vm_ids = itertools.count(1)

    def check_auth(self, req: Request) -> Reply | None:
        if req.headers.get("x-api-key") == self.api_key:
            return None
        return Reply(401, {"detail": "Invalid or missing API key"})

    def error_reply(self, status: int, req: Request) -> Reply:
        return Reply(status, {"detail": f"error {status}"})

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and req.path == f"{VMAAS}/deploy"

    def capacity_reply(self, req: Request) -> Reply:
        return Reply(400, {"detail": "Not enough available hardware for this configuration"})

    def route(self, req: Request) -> Reply:
        if not req.path.startswith(VMAAS):
            return Reply(404, {"detail": "Not Found"})
        parts = [p for p in req.path[len(VMAAS) :].split("/") if p]
        match (req.method, parts):
            case ("GET", ["hardware"]):
                return Reply(200, {"data": {"hardware": self.hardware}})
            case ("POST", ["deploy"]):
                return self._deploy(req.body)
            case ("GET", ["deployments"]) if self.list_endpoint:
                return self._list(req)
            case ("GET", ["deployment", dep_id]):
                dep = self.deployments.get(dep_id)
                if dep is None:
                    return Reply(404, {"detail": "Not found"})
                return Reply(200, {"data": _public(dep)})
            case ("GET", ["deployment", dep_id, "vms"]):
                dep = self.deployments.get(dep_id)
                if dep is None:
                    return Reply(404, {"detail": "Not found"})
                vms = dep["_vms"]
                return Reply(200, {"data": {"total": len(vms), "workers": vms}})
            case ("DELETE", ["deployment", dep_id]):
                if self.deployments.pop(dep_id, None) is None:
                    return Reply(404, {"detail": "Not found"})
                self.destroyed.append(dep_id)
                return Reply(200, {})
        return Reply(404, {"detail": "Not Found"})

    def _list(self, req: Request) -> Reply:
        try:
            page = int(req.query.get("page", "0"))
            size = int(req.query.get("page_size", "10"))
        except ValueError:
            return Reply(422, {"detail": _detail(["query.page: must be an integer"])})
        if not 1 <= size <= 100 or page < 0:
            return Reply(422, {"detail": _detail(["query.page_size: must be in 1..100"])})
        items = [_public(d) for d in self.deployments.values()]
        chunk = items[page * size : (page + 1) * size]
        statuses = sorted({d["status"] for d in items})
        return Reply(
            200, {"data": {"deployments": chunk, "total": len(items), "statuses": statuses}}
        )

    def _deploy(self, body: Any) -> Reply:
        errors = schema_errors(DEPLOY_SCHEMA, body)
        if errors:
            return Reply(422, {"detail": _detail(errors)})
        wanted_loc = (body.get("location_ids") or [None])[0]
        configs = [
            h
            for h in self.hardware
            if h["deploy_id"] == body["hardware_id"]
            and h["num_cards"] == body["gpus_per_vm"]
            and wanted_loc in (None, h["location"])
        ]
        if not configs:
            return Reply(404, {"detail": "Not found"})
        free = [h for h in configs if not h["sold_out"]]
        if not free:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        hw = free[0]
        dep_id = str(uuid.uuid4())
        self.deployments[dep_id] = {
            "id": dep_id,
            "status": "deployment requested",
            "name": body["resource_private_name"],
            "completed_percent": 0,
            "hardware_quantity": 1,
            "brand_name": "NVIDIA",
            "hardware_name": hw["name"],
            "compute_minutes_served": 0,
            "compute_minutes_remaining": 60 * body["duration_hours"],
            "_vms": [{"vm_id": f"vm-{next(self._vm_ids)}", "status": "pending"}],
        }
        if self.deploy_reply is None:
            return Reply(200)
        return Reply(200, self.deploy_reply(dep_id))

    def run_all(self) -> None:
        """Every deployment reaches status `running`."""
        with self.lock:
            for dep in self.deployments.values():
                dep["status"] = "running"
                for vm in dep["_vms"]:
                    vm["status"] = "running"
