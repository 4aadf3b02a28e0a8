"""A local RunPod REST v2 API (api.runpod.io/v2), rebuilt from RunPod's published OpenAPI.

Reference followed: docs.runpod.io/api-reference-v2 (`openapi.json`, "Runpod REST API"
2.0.0, as published in runpod/docs on 2026-08-20): `POST/GET /v2/pods`,
`GET/DELETE /v2/pods/{id}`, `GET /v2/catalog/gpus`, the `ErrorResponse` problem+json body
and the create operation's table of failures.

- Bearer auth; 401 `{"title": "Unauthorized", "status": 401, "detail": ...}`.
- `POST /v2/pods` is validated against `CREATE_POD_SCHEMA`, written from
  `CreatePodRequest` (`unevaluatedProperties: false`, `name` required, `image` required
  without `templateId`, `gpu {id, count>=1}`, `cloud` SECURE|COMMUNITY, `disk` >= 1).
  Violations answer 422 with `errors` naming each one. Exactly one of `gpu`/`cpu` is
  checked by the handler (400), as the reference says. 201 with the Pod, status
  PROVISIONING; `boot_all()` moves pods to RUNNING.
- `GET /v2/catalog/gpus`: `include=AVAILABILITY` needs `product`, and `cloud`/`count`
  are valid only with it (400 otherwise); each GpuType carries `price` per GPU-hour per
  cloud, `maxCount` per cloud and, when asked, `availability`.
- `DELETE` answers 204 without a body; an unknown id 404.

Left open by the reference: the capacity 400's text (it "carries no machine-readable
code"; the `detail` here is made up, and the adapter keys on the status only) and whether
`GET /v2/pods` pages (no paging parameters are specified; none are served).
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request, schema_errors

CREATE_POD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "image": {"type": "string"},
        "args": {"type": "string"},
        "disk": {"type": "integer", "minimum": 1},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "ports": {"type": "array", "items": {"type": "string"}},
        "registry": {"type": ["string", "null"]},
        "cloud": {"enum": ["SECURE", "COMMUNITY"]},
        "cpu": {"type": "object"},
        "dataCenterIds": {"type": "array", "items": {"type": "string"}},
        "globalNetworking": {"type": "boolean"},
        "gpu": {
            "type": "object",
            "required": ["id"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "count": {"type": "integer", "minimum": 1},
                "allowedCudaVersions": {"type": "array", "items": {"type": "string"}},
                "minCudaVersion": {"type": "string"},
            },
        },
        "mounts": {"type": "object"},
        "startJupyter": {"type": "boolean"},
        "startSsh": {"type": "boolean"},
        "templateId": {"type": "string", "minLength": 1},
    },
    "if": {"not": {"required": ["templateId"]}},
    "then": {"required": ["image"]},
}
"""`CreatePodRequest` (with `ContainerConfig`) from the v2 OpenAPI."""


def _gpu(ident: str, name: str, maker: str, memory: int, secure: float | None,
         community: float | None, avail: str = "HIGH") -> dict[str, Any]:  # fmt: skip
    return {
        "id": ident,
        "name": name,
        "pool": None,
        "manufacturer": maker,
        "memory": memory,
        "secure": secure is not None,
        "community": community is not None,
        "price": {"secure": secure or 0.0, "community": community or 0.0},
        "maxCount": {"secure": 8, "community": 4 if community is not None else 0},
        "_availability": avail,
    }


DEFAULT_GPUS = [
    _gpu("NVIDIA GeForce RTX 4090", "RTX 4090", "NVIDIA", 24, 0.69, 0.44),
    _gpu("NVIDIA H100 80GB HBM3", "H100 SXM", "NVIDIA", 80, 2.99, None),
    _gpu("NVIDIA L4", "L4", "NVIDIA", 24, 0.43, 0.28),
    _gpu("AMD Instinct MI300X OAM", "MI300X", "AMD", 192, 2.49, None, avail="NONE"),
]


def problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> Reply:
    """A problem+json reply as the reference's `ErrorResponse`."""
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Reply(status, body)


class RunPodFake(FakeProvider):
    """RunPod REST v2, in memory."""

    provider = "runpod"

    api_key = "rpa_TESTKEY0123456789"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.gpus: list[dict[str, Any]] = [dict(g) for g in DEFAULT_GPUS]
        self.pods: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []
        self._ids = itertools.count(1)

    def check_auth(self, req: Request) -> Reply | None:
        if self.bearer_ok(req):
            return None
        return problem(401, "Unauthorized", "invalid bearer token")

    def error_reply(self, status: int, req: Request) -> Reply:
        if status == 429:
            return problem(429, "Too Many Requests", "rate limit exceeded")
        return problem(status, "Error", f"upstream failure ({status})")

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and req.path == "/v2/pods"

    def capacity_reply(self, req: Request) -> Reply:
        gpu = (req.body or {}).get("gpu", {}).get("id") if isinstance(req.body, dict) else None
        return problem(400, "Bad Request", f"no {gpu or 'GPU'} capacity available right now")

    def route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        match (req.method, parts):
            case ("GET", ["v2", "catalog", "gpus"]):
                return self._catalog(req.query)
            case ("POST", ["v2", "pods"]):
                return self._create(req)
            case ("GET", ["v2", "pods"]):
                return Reply(200, {"pods": list(self.pods.values())})
            case ("GET", ["v2", "pods", pod_id]):
                pod = self.pods.get(pod_id)
                return Reply(200, pod) if pod else problem(404, "Not Found", "pod not found")
            case ("DELETE", ["v2", "pods", pod_id]):
                if self.pods.pop(pod_id, None) is None:
                    return problem(404, "Not Found", "pod not found")
                self.destroyed.append(pod_id)
                return Reply(204)
        return problem(404, "Not Found", "resource not found")

    def _catalog(self, query: dict[str, str]) -> Reply:
        include = query.get("include")
        if include not in (None, "AVAILABILITY"):
            return problem(400, "Bad Request", f"unknown include {include}")
        if include and not query.get("product"):
            return problem(400, "Bad Request", "product is required with include=AVAILABILITY")
        if not include and any(k in query for k in ("product", "count", "cloud")):
            return problem(400, "Bad Request", "product, count and cloud need include")
        out = []
        for g in self.gpus:
            item = {k: v for k, v in g.items() if not k.startswith("_")}
            if include:
                item["availability"] = g["_availability"]
            out.append(item)
        return Reply(200, {"gpus": out})

    def _create(self, req: Request) -> Reply:
        body = req.body
        errors = schema_errors(CREATE_POD_SCHEMA, body)
        if errors:
            return problem(422, "Unprocessable Entity", "Request validation failed.", errors)
        if ("gpu" in body) == ("cpu" in body):
            return problem(400, "Bad Request", "exactly one of gpu or cpu must be set")
        gpu = next((g for g in self.gpus if g["id"] == body["gpu"]["id"]), None)
        cloud = body.get("cloud", "SECURE")
        if gpu is None or not gpu[cloud.lower()]:
            return problem(400, "Bad Request", f"gpu {body['gpu']['id']} is not offered in {cloud}")
        if gpu["_availability"] == "NONE":
            return self.capacity_reply(req)
        count = body["gpu"].get("count", 1)
        pod_id = f"{next(self._ids):04d}h9k2m4n6p"
        self.pods[pod_id] = {
            "id": pod_id,
            "name": body["name"],
            "image": body.get("image", ""),
            "args": "",
            "disk": body.get("disk", 20),
            "ports": [],
            "env": {},
            "registry": None,
            "status": "PROVISIONING",
            "actions": ["terminate"],
            "mounts": {},
            "gpu": {"id": gpu["id"], "count": count},
            "cloud": cloud,
            "dataCenterId": "US-KS-2",
            "cudaVersion": "12.8",
            "ssh": {"proxy": None, "direct": None},
            "template": None,
            "cost": round(gpu["price"][cloud.lower()] * count, 4),
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": None,
            "createdAt": "2026-11-29T12:00:00Z",
            "startedAt": None,
        }
        return Reply(201, self.pods[pod_id])

    def boot_all(self) -> None:
        """Every pod's container is healthy: status RUNNING."""
        with self.lock:
            for pod in self.pods.values():
                pod.update(status="RUNNING", actions=["stop", "restart", "terminate"])
