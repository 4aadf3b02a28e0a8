"""JSON Schema and AsyncAPI 3.0 generated from the Structs and the catalog."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from contracts.base import SCHEMA_VERSION
from contracts.catalog import Channel, all_channels
from contracts.signatures import signature_headers
from contracts.streams import ALL_STREAMS

_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{(\w+)\}")


def _type_name(tp: Any) -> str:
    return str(getattr(tp, "__name__", None) or repr(tp))


def _payload_types() -> list[Any]:
    seen: dict[str, Any] = {}
    for ch in all_channels():
        for tp in (ch.payload, ch.reply):
            if tp is not None:
                seen.setdefault(_type_name(tp), tp)
    return list(seen.values())


def json_schema() -> dict[str, Any]:
    """One JSON Schema document whose `$defs` hold every message of the contract."""
    types = _payload_types()
    _, defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fleetplane.dev/schema/contracts.json",
        "title": "fleetplane wire contract",
        "description": f"Every message of fleetplane, schema version {SCHEMA_VERSION}.",
        "$defs": defs,
        "anyOf": [{"$ref": f"#/$defs/{_type_name(t)}"} for t in types],
    }


def _message_ref(tp: Any) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{_type_name(tp)}"}


def _channel(ch: Channel) -> dict[str, Any]:
    signed = (
        f" Signed by the {ch.signed_by}: NATS headers {', '.join(signature_headers(ch.fenced))} "
        "over contracts.signatures.signed_bytes; readers refuse anything else (ADR 0012)."
        if ch.signed_by
        else ""
    )
    doc: dict[str, Any] = {
        "address": ch.address,
        "description": ch.description
        + (f" JetStream stream {ch.stream}." if ch.stream else "")
        + signed,
        "messages": {_type_name(ch.payload): _message_ref(ch.payload)},
    }
    if ch.reply is not None:
        doc["messages"][_type_name(ch.reply)] = _message_ref(ch.reply)
    params = _PARAM.findall(ch.address)
    if params:
        doc["parameters"] = {p: {"description": f"The {p} subject token."} for p in params}
    return doc


def _operations(ch: Channel) -> dict[str, Any]:
    ref = {"$ref": f"#/channels/{ch.key}"}
    msg = {"$ref": f"#/channels/{ch.key}/messages/{_type_name(ch.payload)}"}
    ops: dict[str, Any] = {}
    if ch.transport == "request":
        op: dict[str, Any] = {
            "action": "receive",
            "channel": ref,
            "summary": ch.description,
            "messages": [msg],
        }
        if ch.reply is not None:
            op["reply"] = {
                "channel": ref,
                "messages": [{"$ref": f"#/channels/{ch.key}/messages/{_type_name(ch.reply)}"}],
            }
        ops[f"handle_{ch.key}"] = op
        return ops
    ops[f"send_{ch.key}"] = {
        "action": "send",
        "channel": ref,
        "summary": f"Published by {', '.join(ch.publishers) or 'anyone'}.",
        "messages": [msg],
    }
    if ch.subscribers:
        ops[f"receive_{ch.key}"] = {
            "action": "receive",
            "channel": ref,
            "summary": f"Consumed by {', '.join(ch.subscribers)}.",
            "messages": [msg],
        }
    return ops


def _asyncapi_schema(node: Any) -> Any:
    """AsyncAPI's Schema Object names the discriminator property with a plain string,
    where JSON Schema/OpenAPI (and msgspec) use `{"propertyName": ..., "mapping": ...}`."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        disc = out.get("discriminator")
        if isinstance(disc, dict):
            out["discriminator"] = disc["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(v) for v in node]
    return node


def asyncapi(version: str = "0.1.0") -> dict[str, Any]:
    """The contract as an AsyncAPI 3.0.0 document."""
    types = _payload_types()
    _, raw = msgspec.json.schema_components(types, ref_template=_REF)
    schemas = _asyncapi_schema(raw)
    channels = all_channels()
    operations: dict[str, Any] = {}
    for ch in channels:
        operations.update(_operations(ch))
    streams = "; ".join(f"{s.name}: {', '.join(s.subjects)}" for s in ALL_STREAMS)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "fleetplane",
            "version": version,
            "description": (
                "The wire contract of fleetplane, a control plane for GPU fleets and hosted "
                f"agents. Messages are JSON with `v` and `ts`. JetStream streams: {streams}."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The NATS server `fleet up` starts.",
            }
        },
        "channels": {ch.key: _channel(ch) for ch in channels},
        "operations": operations,
        "components": {
            "messages": {
                _type_name(t): {
                    "name": _type_name(t),
                    "contentType": "application/json",
                    "payload": {"$ref": _REF.format(name=_type_name(t))},
                }
                for t in types
            },
            "schemas": schemas,
        },
    }
