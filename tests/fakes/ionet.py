"""A local io.net VMaaS API (api.io.solutions) from its documented shapes.

`x-api-key` auth; `GET .../vmaas/hardware` -> {"data": {"hardware": [...]}};
`POST .../vmaas/deploy` validated like the real one (no extra properties, ranges,
422 {"detail": [{loc, msg, type}]}), answering {"status", "deployment_id"} (or
{"data": {"deployment_id"}} with `wrapped_deploy=True`); deployment details, its
VMs, destroy. Listing deployments is undocumented: served unless `list_endpoint=False`.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request

VMAAS = "/enterprise/v1/io-cloud/vmaas"
DEPLOY_KEYS = {
    "resource_private_name": str,
    "duration_hours": int,
    "gpus_per_vm": int,
    "hardware_id": int,
    "location_ids": list,
    "ssh_keys": dict,
    "vm_image_type": str,
}

DEFAULT_HARDWARE = [
    {
        "id": 101,
        "deploy_id": 101,
        "name": "NVIDIA H100 80GB HBM3",
        "num_cards": 16,
        "supplier": "io",
        "sold_out": False,
        "price": 1.99,
        "vram_per_card": 80,
        "storage": 2000,
        "vcpu": 32,
        "memory": 256,
        "location": {"id": 7, "name": "US-Texas"},
    },
    {
        "id": 102,
        "deploy_id": 102,
        "name": "NVIDIA A100 80GB PCIe",
        "num_cards": 8,
        "supplier": "io",
        "sold_out": False,
        "price": 1.19,
        "vram_per_card": 80,
        "storage": 1000,
        "vcpu": 16,
        "memory": 128,
        "location": {"id": 8, "name": "EU-Finland"},
    },
    {
        "id": 103,
        "deploy_id": 103,
        "name": "NVIDIA GeForce RTX 4090",
        "num_cards": 0,
        "supplier": "io",
        "sold_out": True,
        "price": 0.29,
        "vram_per_card": 24,
        "storage": 500,
        "vcpu": 8,
        "memory": 64,
        "location": {"id": 7, "name": "US-Texas"},
    },
]


def _err(loc: str, msg: str, typ: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", loc], "msg": msg, "type": typ}


def _public(dep: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dep.items() if not k.startswith("_")}


class IoNetFake(FakeProvider):
    """io.net VMaaS, in memory."""

    provider = "ionet"

    api_key = "io-test-key-51c0d2"

    def __init__(
        self, api_key: str | None = None, wrapped_deploy: bool = False, list_endpoint: bool = True
    ) -> None:
        super().__init__(api_key)
        self.hardware: list[dict[str, Any]] = [dict(h) for h in DEFAULT_HARDWARE]
        self.deployments: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []
        self.wrapped_deploy = wrapped_deploy
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
        return Reply(400, {"detail": "Hardware is sold_out: not enough available cards"})

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
                return Reply(
                    200, {"data": {"deployments": [_public(d) for d in self.deployments.values()]}}
                )
            case ("GET", ["deployment", dep_id]):
                dep = self.deployments.get(dep_id)
                if dep is None:
                    return Reply(404, {"detail": "Deployment not found"})
                return Reply(200, {"data": _public(dep)})
            case ("GET", ["deployment", dep_id, "vms"]):
                dep = self.deployments.get(dep_id)
                if dep is None:
                    return Reply(404, {"detail": "Deployment not found"})
                vms = dep["_vms"]
                return Reply(200, {"data": {"total": len(vms), "workers": vms}})
            case ("DELETE", ["deployment", dep_id]):
                if self.deployments.pop(dep_id, None) is None:
                    return Reply(404, {"detail": "Deployment not found"})
                self.destroyed.append(dep_id)
                return Reply(200, {"status": "success"})
        return Reply(404, {"detail": "Not Found"})

    def _deploy(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return Reply(422, {"detail": [_err("", "body must be an object", "type_error")]})
        errors = [
            _err(k, "extra fields not permitted", "extra_forbidden")
            for k in body
            if k not in DEPLOY_KEYS
        ]
        for key, typ in DEPLOY_KEYS.items():
            if key not in body:
                if key != "ssh_keys":
                    errors.append(_err(key, "field required", "missing"))
            elif not isinstance(body[key], typ) or isinstance(body[key], bool):
                errors.append(_err(key, f"must be {typ.__name__}", "type_error"))
        if not errors:
            if not 1 <= body["duration_hours"] <= 8760:
                errors.append(_err("duration_hours", "must be in 1..8760"))
            if not 1 <= body["gpus_per_vm"] <= 8:
                errors.append(_err("gpus_per_vm", "must be in 1..8"))
            if len(body["location_ids"]) != 1:
                errors.append(_err("location_ids", "exactly one location is supported"))
        if errors:
            return Reply(422, {"detail": errors})
        hw = next((h for h in self.hardware if h["id"] == body["hardware_id"]), None)
        if hw is None:
            return Reply(404, {"detail": "Hardware not found"})
        if hw["sold_out"] or hw["num_cards"] < body["gpus_per_vm"]:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        hw["num_cards"] -= body["gpus_per_vm"]
        dep_id = str(uuid.uuid4())
        self.deployments[dep_id] = {
            "id": dep_id,
            "status": "deploying",
            "name": body["resource_private_name"],
            "total_gpus": body["gpus_per_vm"],
            "hardware_name": hw["name"],
            "brand_name": "NVIDIA",
            "completed_percent": 0,
            "amount_paid": hw["price"] * body["gpus_per_vm"],
            "_vms": [{"vm_id": f"vm-{next(self._vm_ids)}", "status": "pending"}],
        }
        if self.wrapped_deploy:
            return Reply(200, {"data": {"deployment_id": dep_id}})
        return Reply(200, {"status": "success", "deployment_id": dep_id})

    def run_all(self) -> None:
        """Every deployment reaches status `running`."""
        with self.lock:
            for dep in self.deployments.values():
                dep["status"] = "running"
                for vm in dep["_vms"]:
                    vm["status"] = "running"
