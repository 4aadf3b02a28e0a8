"""A local Lambda Cloud API (cloud.lambdalabs.com/api/v1) from its OpenAPI shapes.

Bearer auth; `GET /instance-types` (price_cents_per_hour an int for some types and a
string for others); `POST /instance-operations/launch` that may launch fewer than
asked (`launch_limit`); terminate; `GET /instances`. Errors are
{"error": {"code", "message", "suggestion"}}.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request


def _type(name: str, cents: int | str, desc: str, gpu_desc: str, gpus: int, regions: list[str]):
    return {
        "instance_type": {
            "name": name,
            "description": desc,
            "gpu_description": gpu_desc,
            "price_cents_per_hour": cents,
            "specs": {
                "vcpus": 30 * gpus,
                "memory_gib": 200 * gpus,
                "storage_gib": 1400,
                "gpus": gpus,
            },
        },
        "regions_with_capacity_available": [
            {"name": r, "description": r.replace("-", " ")} for r in regions
        ],
    }


def _error(status: int, code: str, message: str, suggestion: str | None = None) -> Reply:
    err: dict[str, Any] = {"code": code, "message": message}
    if suggestion:
        err["suggestion"] = suggestion
    return Reply(status, {"error": err})


class LambdaFake(FakeProvider):
    """Lambda Cloud, in memory."""

    provider = "lambda"

    api_key = "secret_lambda_test_abc123"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.types: dict[str, Any] = {
            "gpu_1x_a10": _type(
                "gpu_1x_a10", 75, "1x A10 (24 GB PCIe)", "A10 (24 GB PCIe)", 1, ["us-west-1"]
            ),
            "gpu_1x_h100_pcie": _type(
                "gpu_1x_h100_pcie",
                "249",
                "1x H100 (80 GB PCIe)",
                "H100 (80 GB PCIe)",
                1,
                ["us-east-1", "us-west-3"],
            ),
            "gpu_8x_a100_80gb_sxm4": _type(
                "gpu_8x_a100_80gb_sxm4", 1432, "8x A100 (80 GB SXM4)", "A100 (80 GB SXM4)", 8, []
            ),
        }
        self.instances: dict[str, dict[str, Any]] = {}
        self.ssh_keys = {"fleet-key"}
        self.launch_limit: int | None = None
        """When set, a launch starts at most this many instances (capacity ran out)."""
        self.destroyed: list[str] = []
        self._ids = itertools.count(1)

    def check_auth(self, req: Request) -> Reply | None:
        if self.bearer_ok(req):
            return None
        return _error(
            401,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            "Check your API key or create a new one, then try again.",
        )

    def error_reply(self, status: int, req: Request) -> Reply:
        if status == 429:
            return _error(429, "global/too-many-requests", "Too many requests")
        return _error(status, "global/unknown", f"Something went wrong ({status})")

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and req.path == "/instance-operations/launch"

    def capacity_reply(self, req: Request) -> Reply:
        return _error(
            400,
            "instance-operations/launch/insufficient-capacity",
            "Not enough capacity to fulfill launch request.",
            "Choose an instance type with more availability, or try again later.",
        )

    def route(self, req: Request) -> Reply:
        match (req.method, req.path.rstrip("/")):
            case ("GET", "/instance-types"):
                return Reply(200, {"data": self.types})
            case ("POST", "/instance-operations/launch"):
                return self._launch(req.body)
            case ("POST", "/instance-operations/terminate"):
                ids = req.body.get("instance_ids") if isinstance(req.body, dict) else None
                if not isinstance(ids, list) or not ids:
                    return _error(400, "global/invalid-parameters", "instance_ids is required")
                unknown = [i for i in ids if i not in self.instances]
                if unknown:
                    return _error(404, "global/object-does-not-exist", f"unknown {unknown}")
                gone = []
                for i in ids:
                    inst = self.instances.pop(i)
                    inst["status"] = "terminated"
                    gone.append(inst)
                    self.destroyed.append(i)
                return Reply(200, {"data": {"terminated_instances": gone}})
            case ("GET", "/instances"):
                return Reply(200, {"data": list(self.instances.values())})
        return _error(404, "global/object-does-not-exist", f"no route {req.path}")

    def _launch(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _error(400, "global/invalid-parameters", "body must be an object")
        for key in ("region_name", "instance_type_name"):
            if not isinstance(body.get(key), str):
                return _error(400, "global/invalid-parameters", f"{key} is required")
        keys = body.get("ssh_key_names")
        if not isinstance(keys, list) or len(keys) != 1 or keys[0] not in self.ssh_keys:
            return _error(
                400,
                "global/invalid-parameters",
                "ssh_key_names must name exactly one registered SSH key",
            )
        entry = self.types.get(body["instance_type_name"])
        if entry is None:
            return _error(404, "global/object-does-not-exist", "unknown instance type")
        regions = {r["name"] for r in entry["regions_with_capacity_available"]}
        if body["region_name"] not in regions:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        quantity = int(body.get("quantity") or 1)
        if self.launch_limit is not None:
            quantity = min(quantity, self.launch_limit)
        if quantity <= 0:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        ids = []
        for _ in range(quantity):
            ident = f"0920582c7ff041399e34823a0be6{next(self._ids):04d}"
            self.instances[ident] = {
                "id": ident,
                "name": body.get("name"),
                "status": "booting",
                "ip": None,
                "region": {"name": body["region_name"]},
                "instance_type": entry["instance_type"],
                "ssh_key_names": keys,
            }
            ids.append(ident)
        return Reply(200, {"data": {"instance_ids": ids}})
