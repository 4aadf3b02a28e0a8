"""A local Hypercore cluster node from its HTTP handlers: `/spawn`, `/stop?id=`, `/list`.

No auth. Answers {"response": ...} or 400 {"error": "..."}, and leaves
zero-valued fields out of its JSON as Go's `omitempty` does.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request

SPAWN_KEYS = {"cores", "memory", "image_ref", "ports", "env", "dry_run"}


def _omit_zero(obj: Any) -> Any:
    """Drop zero, empty and false values, recursively."""
    if isinstance(obj, dict):
        out = {k: _omit_zero(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (0, "", False, None, [], {})}
    if isinstance(obj, list):
        return [_omit_zero(v) for v in obj]
    return obj


class HypercoreFake(FakeProvider):
    """One Hypercore node, in memory."""

    provider = "hypercore"

    api_key = ""
    max_cores = 16
    """Cores the node has; a spawn beyond them fails as the node does."""

    def __init__(self) -> None:
        super().__init__()
        self.workloads: dict[str, dict[str, Any]] = {}
        self.destroyed: list[str] = []

    def error_reply(self, status: int, req: Request) -> Reply:
        return Reply(status, {"error": f"injected {status}"})

    def is_create(self, req: Request) -> bool:
        return req.path == "/spawn"

    def capacity_reply(self, req: Request) -> Reply:
        return Reply(400, {"error": "insufficient resources on any node"})

    def route(self, req: Request) -> Reply:
        match req.path.rstrip("/"):
            case "/spawn":
                return self._spawn(req.body)
            case "/stop":
                ident = req.query.get("id", "")
                if self.workloads.pop(ident, None) is None:
                    return Reply(400, {"error": f"workload {ident} not found"})
                self.destroyed.append(ident)
                return Reply(200, {"response": {"id": ident, "ip": "10.0.0.2"}})
            case "/list":
                node = {"id": "node-1", "ip": "10.0.0.2"}
                wl = [{"id": i, "source_request": src} for i, src in self.workloads.items()]
                states = [{"node": node, "workloads": wl}]
                return Reply(200, _omit_zero({"response": {"states": states}}))
        return Reply(404, text="404 page not found\n")

    def _spawn(self, body: Any) -> Reply:
        if not isinstance(body, dict) or set(body) - SPAWN_KEYS:
            return Reply(400, {"error": "json: unknown field or bad body"})
        cores, memory = body.get("cores"), body.get("memory")
        if not isinstance(cores, int) or cores <= 0 or not isinstance(memory, int) or memory <= 0:
            return Reply(400, {"error": "cores and memory must be positive"})
        if not body.get("image_ref"):
            return Reply(400, {"error": "image_ref is required"})
        used = sum(w.get("cores", 0) for w in self.workloads.values())
        if used + cores > self.max_cores:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        if body.get("dry_run"):
            return Reply(200, {"response": {}})
        ident = str(uuid.uuid4())
        self.workloads[ident] = dict(body)
        return Reply(200, {"response": {"id": ident, "url": f"{ident[:8]}.node-1.local"}})
