"""A local Hypercore cluster node, rebuilt from Vistara-Labs/hypercore's source.

Reference followed (the only one there is): Vistara-Labs/hypercore at its 2026-01-29
commit: `pkg/cluster/service.go` (the HTTP handlers and `writeResponse`),
`pkg/cluster/serf.go` (SpawnRequest, StopRequest, the 5 s WorkloadBroadcastPeriod, the
`node.ip` chunk markers) and `pkg/proto/cluster.proto` (VmSpawnRequest, NodeStateResponse).

- No auth. Answers 200 `{"response": ...}` or 400 `{"error": "<Go error text>"}`, and
  leaves zero-valued fields out as `omitempty` does.
- `/spawn` decodes a `VmSpawnRequest` with Go's encoding/json: unknown fields are ignored
  (as there), a wrongly typed field is a 400 "json: cannot unmarshal ..." (checked with
  `SPAWN_SCHEMA`). With no room on any node it answers the source's text "no suitable
  node found after trying all policy-selected candidates".
- `/stop?id=` of an id no node holds answers 400 "no success response received from
  nodes"; a stop answers the node `{id, ip}`, where `ip` is a marker such as
  "node-1_complete", never an address.
- `/list` answers from the last state broadcast: a new workload shows only after
  `settle()` (the node's 5 s tick), and a stopped one leaves it then too.

Left open by the source: how long a real broadcast takes to reach the node you ask
(gossip); the adapter waits `list_lag_s` (10 s by default) before trusting an absence.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.server import FakeProvider, Reply, Request, schema_errors

SPAWN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cores": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "memory": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "image_ref": {"type": "string"},
        "ports": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "dry_run": {"type": "boolean"},
        "env": {"type": "array", "items": {"type": "string"}},
    },
}
"""`VmSpawnRequest` (cluster.proto) as Go's encoding/json decodes it."""

NO_ROOM = "no suitable node found after trying all policy-selected candidates"
GONE = "no success response received from nodes"


def _omit_zero(obj: Any) -> Any:
    """Drop zero, empty and false values, recursively."""
    if isinstance(obj, dict):
        out = {k: _omit_zero(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (0, "", False, None, [], {})}
    if isinstance(obj, list):
        return [_omit_zero(v) for v in obj]
    return obj


class HypercoreFake(FakeProvider):
    """One Hypercore node, in memory, with a lagging `/list`."""

    provider = "hypercore"

    api_key = ""
    max_cores = 16
    """Cores the node has; a spawn beyond them fails as the node does."""

    def __init__(self) -> None:
        super().__init__()
        self.workloads: dict[str, dict[str, Any]] = {}
        self.broadcast: dict[str, dict[str, Any]] = {}
        """What `/list` shows: the workloads as of the last `settle()`."""
        self.destroyed: list[str] = []

    def settle(self) -> None:
        """The node's state broadcast: `/list` now shows what runs."""
        with self.lock:
            self.broadcast = dict(self.workloads)

    def error_reply(self, status: int, req: Request) -> Reply:
        return Reply(status, {"error": f"injected {status}"})

    def is_create(self, req: Request) -> bool:
        return req.path == "/spawn"

    def capacity_reply(self, req: Request) -> Reply:
        return Reply(400, {"error": NO_ROOM})

    def route(self, req: Request) -> Reply:
        match req.path.rstrip("/"):
            case "/spawn":
                return self._spawn(req.body)
            case "/stop":
                ident = req.query.get("id", "")
                if self.workloads.pop(ident, None) is None:
                    return Reply(400, {"error": GONE})
                self.destroyed.append(ident)
                return Reply(200, {"response": {"id": "node-1", "ip": "node-1_complete"}})
            case "/list":
                node = {"id": "node-1", "ip": "node-1_complete"}
                wl = [{"id": i, "source_request": src} for i, src in self.broadcast.items()]
                states = [{"node": node, "workloads": wl}]
                return Reply(200, _omit_zero({"response": {"states": states}}))
        return Reply(404, text="404 page not found\n")

    def _spawn(self, body: Any) -> Reply:
        errors = schema_errors(SPAWN_SCHEMA, body)
        if errors:
            field = errors[0].split(":")[0]
            return Reply(
                400,
                {"error": f"json: cannot unmarshal into Go struct field VmSpawnRequest.{field}"},
            )
        cores = int(body.get("cores") or 0)
        used = sum(int(w.get("cores") or 0) for w in self.workloads.values())
        if used + cores > self.max_cores:
            return self.capacity_reply(Request("POST", "", {}, {}, None))
        if body.get("dry_run"):
            return Reply(200, {"response": {}})
        ident = str(uuid.uuid4())
        self.workloads[ident] = dict(body)
        return Reply(200, {"response": {"id": ident, "url": f"{ident[:8]}.node-1.local"}})
