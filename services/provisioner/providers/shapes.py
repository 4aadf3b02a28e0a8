"""What each adapter reads from its provider's read-only calls, field by field, and a pure
check of a real answer against it. `fleet providers check` makes the calls with the
user's own key and prints the verdicts, so a provider changing a shape shows up as a
named field before it shows up as a failed rent.

A field path is dotted; `[]` walks every item of a list and `{}` every value of an
object (Lambda keys instance types by name). Types: str, int, number, bool, list, dict,
null, joined with `|`. A trailing `?` marks a field the provider may leave out
(Hypercore omits zero values, Go's `omitempty`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["ok", "missing", "wrong type", "unchecked"]


@dataclass(frozen=True)
class Probe:
    """One read-only call and the fields the adapter reads from its answer."""

    name: str
    method: str
    path: str
    fields: tuple[tuple[str, str], ...]
    """(path, expected types), e.g. ("offers[].dph_total", "number")."""
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class FieldCheck:
    """One field's verdict."""

    path: str
    expected: str
    got: str
    verdict: Verdict


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


_MISSING = object()


def _walk(doc: Any, parts: list[str]) -> list[Any]:
    """Every value at `parts` below `doc` (several under `[]`/`{}`); _MISSING where absent."""
    if not parts:
        return [doc]
    head, rest = parts[0], parts[1:]
    key, each = head, ""
    if head.endswith("[]") or head.endswith("{}"):
        key, each = head[:-2], head[-2:]
    if not isinstance(doc, dict) or key not in doc:
        # An absent collection has no items to judge; its own entry reports it missing.
        return [] if each else [_MISSING]
    value = doc[key]
    if not each:
        return _walk(value, rest)
    if each == "[]" and isinstance(value, list):
        items = value
    elif each == "{}" and isinstance(value, dict):
        items = list(value.values())
    else:
        return [value]  # not a collection: judged as the wrong type below
    return [v for item in items for v in _walk(item, rest)]


def check_field(doc: Any, path: str, expected: str) -> FieldCheck:
    """The verdict for one field of `doc`."""
    optional = expected.endswith("?")
    allowed = set(expected.rstrip("?").split("|"))
    if "number" in allowed:
        allowed.add("int")
    values = _walk(doc, path.split("."))
    present = [v for v in values if v is not _MISSING]
    if not values:
        return FieldCheck(path, expected, "no items", "unchecked")
    if len(present) < len(values):
        if optional:
            got = sorted({_type_name(v) for v in present}) or ["absent"]
            return FieldCheck(path, expected, "|".join(got), "ok")
        return FieldCheck(path, expected, "absent", "missing")
    got_types = sorted({_type_name(v) for v in present})
    wrong = [t for t in got_types if t not in allowed]
    return FieldCheck(path, expected, "|".join(got_types), "wrong type" if wrong else "ok")


def check(doc: Any, probe: Probe) -> list[FieldCheck]:
    """Every field of `probe` judged against the answer `doc`."""
    out = []
    for path, expected in probe.fields:
        result = check_field(doc, path, expected)
        if result.got == "absent" and _empty_above(doc, path):
            result = FieldCheck(path, expected, "no items", "unchecked")
        out.append(result)
    return out


def _empty_above(doc: Any, path: str) -> bool:
    """True when a `[]`/`{}` step above `path` is an empty collection (nothing to judge)."""
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part.endswith(("[]", "{}")):
            outer = _walk(doc, [*parts[:i], part[:-2]])
            if all(isinstance(v, list | dict) and not v for v in outer):
                return True
    return False


PROBES: dict[str, tuple[Probe, ...]] = {
    "vastai": (
        Probe(
            "offer search",
            "POST",
            "/api/v0/bundles/",
            body={
                "rentable": {"eq": True},
                "order": [["dph_total", "asc"]],
                "type": "on-demand",
                "limit": 5,
                "allocated_storage": 20,
            },
            fields=(
                ("offers", "list"),
                ("offers[].id", "int|str"),
                ("offers[].gpu_name", "str"),
                ("offers[].gpu_ram", "number"),
                ("offers[].num_gpus", "int"),
                ("offers[].dph_total", "number"),
                ("offers[].reliability2", "number?"),
                ("offers[].geolocation", "str|null?"),
                ("offers[].rentable", "bool?"),
            ),
        ),
        Probe(
            "instance list (v1)",
            "GET",
            "/api/v1/instances/",
            params={"limit": 5, "select_filters": json.dumps({})},
            fields=(
                ("instances", "list"),
                ("next_token", "str|null?"),
                ("instances[].id", "int"),
                ("instances[].actual_status", "str|null"),
                ("instances[].label", "str|null"),
                ("instances[].gpu_name", "str|null"),
                ("instances[].dph_total", "number"),
                ("instances[].public_ipaddr", "str|null?"),
            ),
        ),
    ),
    "ionet": (
        Probe(
            "hardware list",
            "GET",
            "/enterprise/v1/io-cloud/vmaas/hardware",
            fields=(
                ("data.hardware", "list"),
                ("data.hardware[].deploy_id", "int|str"),
                ("data.hardware[].name", "str"),
                ("data.hardware[].num_cards", "int"),
                ("data.hardware[].price", "number"),
                ("data.hardware[].vram_per_card", "int|null?"),
                ("data.hardware[].location", "str|null?"),
                ("data.hardware[].sold_out", "bool?"),
            ),
        ),
        Probe(
            "deployment list (undocumented)",
            "GET",
            "/enterprise/v1/io-cloud/vmaas/deployments",
            params={"page": 0, "page_size": 5},
            fields=(
                ("data.deployments", "list"),
                ("data.total", "int?"),
                ("data.deployments[].id", "str"),
                ("data.deployments[].status", "str"),
                ("data.deployments[].name", "str"),
                ("data.deployments[].hardware_name", "str?"),
            ),
        ),
    ),
    "runpod": (
        Probe(
            "GPU catalog",
            "GET",
            "/v2/catalog/gpus",
            params={"include": "AVAILABILITY", "product": "POD"},
            fields=(
                ("gpus", "list"),
                ("gpus[].id", "str"),
                ("gpus[].name", "str"),
                ("gpus[].manufacturer", "str"),
                ("gpus[].memory", "int"),
                ("gpus[].secure", "bool"),
                ("gpus[].community", "bool"),
                ("gpus[].price.secure", "number"),
                ("gpus[].price.community", "number"),
                ("gpus[].maxCount.secure", "int"),
                ("gpus[].availability", "str"),
            ),
        ),
        Probe(
            "pod list",
            "GET",
            "/v2/pods",
            fields=(
                ("pods", "list"),
                ("pods[].id", "str"),
                ("pods[].name", "str"),
                ("pods[].status", "str"),
                ("pods[].gpu.id", "str?"),
                ("pods[].cost", "number"),
            ),
        ),
    ),
    "lambda": (
        Probe(
            "instance types",
            "GET",
            "/instance-types",
            fields=(
                ("data", "dict"),
                ("data{}.instance_type.name", "str"),
                ("data{}.instance_type.description", "str"),
                ("data{}.instance_type.gpu_description", "str"),
                ("data{}.instance_type.price_cents_per_hour", "int"),
                ("data{}.instance_type.specs.gpus", "int"),
                ("data{}.regions_with_capacity_available", "list"),
                ("data{}.regions_with_capacity_available[].name", "str"),
            ),
        ),
        Probe(
            "instance list",
            "GET",
            "/instances",
            fields=(
                ("data", "list"),
                ("data[].id", "str"),
                ("data[].name", "str|null?"),
                ("data[].status", "str"),
                ("data[].ip", "str|null?"),
                ("data[].instance_type.price_cents_per_hour", "int"),
            ),
        ),
    ),
    "hypercore": (
        Probe(
            "cluster list",
            "GET",
            "/list",
            fields=(
                ("response", "dict"),
                ("response.states", "list?"),
                ("response.states[].node.id", "str?"),
                ("response.states[].workloads[].id", "str"),
                ("response.states[].workloads[].source_request.cores", "int?"),
                ("response.states[].workloads[].source_request.env", "list?"),
            ),
        ),
    ),
}
"""The read-only calls `fleet providers check` makes, and what each adapter reads."""
