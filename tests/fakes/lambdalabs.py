"""A local Lambda Cloud API (cloud.lambda.ai/api/v1), rebuilt from Lambda's OpenAPI.

Reference followed: the Lambda Cloud API OpenAPI (info.version 1.8.3 as published with
lambda-ai-cloud-api-client, servers `cloud.lambda.ai` and the deprecated
`cloud.lambdalabs.com`; read November 2026) and docs.lambda.ai/api/cloud.

- Bearer auth (Basic with the key and a trailing colon is accepted too, as documented);
  401 `{"error": {"code": "global/invalid-api-key", ...}}` with the spec's default texts.
- `GET /instance-types` -> `{"data": {name: {instance_type, regions_with_capacity_available}}}`
  with `price_cents_per_hour` an integer, as the spec types it.
- `POST /instance-operations/launch` is validated against `LAUNCH_SCHEMA`, written from
  `InstanceLaunchRequest`: region_name (one of the PublicRegionCode values),
  instance_type_name and ssh_key_names required; name at most 64 characters. The spec
  does not forbid other fields, so (like the service) the fake ignores them: a
  `quantity` is not part of the API and launches one instance. Errors are 400 with
  `instance-operations/launch/insufficient-capacity`, `global/invalid-parameters`,
  `global/quota-exceeded`; 404 `global/object-does-not-exist` for an unknown type.
- Terminate: 404 `global/object-does-not-exist` for unknown ids; else the terminated
  instances, status `terminating`.
- Statuses served: booting, active, unhealthy, terminating, terminated, preempted.

Left open: whether the old host still answers or redirects (`redirect_to` makes this
fake answer every request with a 301 to another base URL, to test that the adapter does
not carry its key there), and the message texts (the spec says to key on `code`).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request, schema_errors

REGIONS = [
    "europe-central-1", "asia-south-1", "australia-east-1", "me-west-1", "asia-northeast-1",
    "asia-northeast-2", "us-east-1", "us-west-2", "us-west-1", "us-south-1", "us-west-3",
    "us-midwest-1", "us-east-2", "us-south-2", "us-south-3", "us-east-3", "us-midwest-2",
]  # fmt: skip
"""`PublicRegionCode` in the spec."""

LAUNCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["region_name", "instance_type_name", "ssh_key_names"],
    "properties": {
        "region_name": {"enum": REGIONS},
        "instance_type_name": {"type": "string"},
        "ssh_key_names": {"type": "array", "items": {"type": "string"}},
        "file_system_names": {"type": "array", "items": {"type": "string"}},
        "file_system_mounts": {"type": "array"},
        "hostname": {"type": "string", "pattern": "^[a-z0-9][0-9a-z-]{0,62}$"},
        "name": {"type": "string", "maxLength": 64},
        "image": {"type": "object"},
        "user_data": {"type": "string"},
        "tags": {"type": "array"},
        "firewall_rulesets": {"type": "array"},
    },
}
"""`InstanceLaunchRequest` in the spec (no `additionalProperties: false` there)."""


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
                249,
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
        """When set, only this many more launches succeed (capacity runs out)."""
        self.redirect_to: str | None = None
        """When set, every request answers 301 to this base URL (an old host moved)."""
        self.destroyed: list[str] = []
        self._ids = itertools.count(1)

    def check_auth(self, req: Request) -> Reply | None:
        if self.redirect_to is not None:
            return Reply(301, headers={"Location": self.redirect_to + req.path})
        basic = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if self.bearer_ok(req) or req.headers.get("authorization") == basic:
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
                    inst["status"] = "terminating"
                    gone.append(inst)
                    self.destroyed.append(i)
                return Reply(200, {"data": {"terminated_instances": gone}})
            case ("GET", "/instances"):
                return Reply(200, {"data": list(self.instances.values())})
        return _error(404, "global/object-does-not-exist", f"no route {req.path}")

    def _launch(self, body: Any) -> Reply:
        errors = schema_errors(LAUNCH_SCHEMA, body)
        if errors:
            return _error(400, "global/invalid-parameters", "Invalid request data.", errors[0])
        keys = body["ssh_key_names"]
        if len(keys) != 1 or keys[0] not in self.ssh_keys:
            return _error(
                400,
                "global/invalid-parameters",
                "Invalid request data.",
                "Exactly one registered SSH key must be specified.",
            )
        entry = self.types.get(body["instance_type_name"])
        if entry is None:
            return _error(
                404,
                "global/object-does-not-exist",
                "Instance type not found.",
                "Check the instance type name.",
            )
        regions = {r["name"] for r in entry["regions_with_capacity_available"]}
        if body["region_name"] not in regions or self.launch_limit == 0:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        if self.launch_limit is not None:
            self.launch_limit -= 1
        ident = f"0920582c7ff041399e34823a0be6{next(self._ids):04d}"
        self.instances[ident] = {
            "id": ident,
            "name": body.get("name"),
            "status": "booting",
            "ssh_key_names": keys,
            "file_system_names": [],
            "region": {"name": body["region_name"], "description": body["region_name"]},
            "instance_type": entry["instance_type"],
            "hostname": f"{ident[:8]}.cloud.lambda.ai",
            "jupyter_token": "",
            "jupyter_url": "",
            "is_reserved": False,
            "actions": {},
        }
        return Reply(200, {"data": {"instance_ids": [ident]}})
