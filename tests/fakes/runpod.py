"""A local RunPod API from its documented shapes: REST v1 pods under `/v1`
(Bearer; Pod objects with `costPerHr` as a STRING; `GET /pods` a bare array)
and the `gpuTypes` GraphQL query at `/graphql` for prices.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request

DEFAULT_GPU_TYPES = [
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24,
     "secureCloud": True, "communityCloud": True, "securePrice": 0.69, "communityPrice": 0.44},
    {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80,
     "secureCloud": True, "communityCloud": False, "securePrice": 2.99, "communityPrice": None},
    {"id": "NVIDIA L4", "displayName": "L4", "memoryInGb": 24,
     "secureCloud": True, "communityCloud": True, "securePrice": 0.43, "communityPrice": 0.28},
]  # fmt: skip
REQUIRED = {"imageName": str, "gpuTypeIds": list}
ALLOWED = {
    "name", "imageName", "gpuTypeIds", "gpuCount", "cloudType", "interruptible",
    "containerDiskInGb", "volumeInGb", "volumeMountPath", "ports", "env", "templateId",
    "computeType", "dataCenterIds", "networkVolumeId", "supportPublicIp",
}  # fmt: skip


class RunPodFake(FakeProvider):
    """RunPod, in memory."""

    provider = "runpod"

    api_key = "rpa_TESTKEY0123456789"
    root = "/v1"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(api_key)
        self.gpu_types: list[dict[str, Any]] = [dict(g) for g in DEFAULT_GPU_TYPES]
        self.pods: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []
        self._ids = itertools.count(1)

    def check_auth(self, req: Request) -> Reply | None:
        if self.bearer_ok(req):
            return None
        return Reply(401, {"error": "Unauthorized", "status": 401})

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and req.path == "/pods"

    def capacity_reply(self, req: Request) -> Reply:
        return Reply(
            400,
            {
                "error": "create pod: There are no longer any instances available with the "
                "requested specifications. Please refresh and try again.",
                "status": 400,
            },
        )

    def route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        match (req.method, parts):
            case ("POST", ["graphql"]):
                query = (req.body or {}).get("query", "") if isinstance(req.body, dict) else ""
                if "gpuTypes" not in query:
                    return Reply(400, {"errors": [{"message": "unknown query"}]})
                return Reply(200, {"data": {"gpuTypes": self.gpu_types}})
            case ("POST", ["pods"]):
                return self._create(req.body)
            case ("GET", ["pods"]):
                return Reply(200, list(self.pods.values()))
            case ("GET", ["pods", pod_id]):
                pod = self.pods.get(pod_id)
                return Reply(200, pod) if pod else Reply(404, {"error": "pod not found"})
            case ("DELETE", ["pods", pod_id]):
                if self.pods.pop(pod_id, None) is None:
                    return Reply(404, {"error": "pod not found", "status": 404})
                self.destroyed.append(pod_id)
                return Reply(204)
        return Reply(404, {"error": "not found"})

    def _create(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return Reply(400, {"error": "invalid JSON body", "status": 400})
        bad = [k for k, t in REQUIRED.items() if not isinstance(body.get(k), t)]
        bad += [k for k in body if k not in ALLOWED]
        if bad:
            return Reply(400, {"error": f"invalid fields: {bad}", "status": 400})
        gpu = next((g for g in self.gpu_types if g["id"] in body["gpuTypeIds"]), None)
        if gpu is None:
            return Reply(400, {"error": f"unknown gpuTypeIds {body['gpuTypeIds']}", "status": 400})
        count = int(body.get("gpuCount") or 1)
        secure = body.get("cloudType", "SECURE") == "SECURE"
        price = (gpu["securePrice"] if secure else gpu["communityPrice"]) or 0
        pod_id = f"pod{next(self._ids):04d}xyz"
        self.pods[pod_id] = {
            "id": pod_id,
            "name": body.get("name", ""),
            "desiredStatus": "RUNNING",
            "costPerHr": f"{price * count:.2f}",
            "gpuCount": count,
            "imageName": body["imageName"],
            "gpu": {"id": gpu["id"], "displayName": gpu["displayName"], "count": count},
            "publicIp": None,
            "machineId": "m-1",
        }
        return Reply(201, self.pods[pod_id])
