"""A2A v0.3 request params rewritten into their 1.0 shape.

Calls made with the v0.3 method names (`message/send`, ...) may carry v0.3
messages: lower-case roles, parts tagged with `kind`, files as
`{"file": {"bytes"|"uri", "mimeType", "name"}}`. They are translated here
before validation; answers are always 1.0 JSON.
"""

from __future__ import annotations

from typing import Any

_ROLES = {"user": "ROLE_USER", "agent": "ROLE_AGENT"}


def _part(part: Any) -> Any:
    if not isinstance(part, dict) or "kind" not in part:
        return part
    out = {k: v for k, v in part.items() if k not in ("kind", "file")}
    file = part.get("file")
    if isinstance(file, dict):
        if "bytes" in file:
            out["raw"] = file["bytes"]
        if "uri" in file:
            out["url"] = file["uri"]
        if "mimeType" in file:
            out["mediaType"] = file["mimeType"]
        if "name" in file:
            out["filename"] = file["name"]
    return out


def _message(msg: Any) -> Any:
    if not isinstance(msg, dict):
        return msg
    out = {k: v for k, v in msg.items() if k != "kind"}
    role = out.get("role")
    if isinstance(role, str) and role in _ROLES:
        out["role"] = _ROLES[role]
    if isinstance(out.get("parts"), list):
        out["parts"] = [_part(p) for p in out["parts"]]
    return out


def upgrade_params(params: dict[str, Any]) -> dict[str, Any]:
    """v0.3 params as 1.0 params; 1.0 params pass unchanged."""
    out = dict(params)
    if "message" in out:
        out["message"] = _message(out["message"])
    config = out.get("configuration")
    if isinstance(config, dict) and "blocking" in config:
        config = {k: v for k, v in config.items() if k != "blocking"}
        config["returnImmediately"] = not params["configuration"]["blocking"]
        out["configuration"] = config
    return out
