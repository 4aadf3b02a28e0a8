"""Walking a settings table against its type: unknown keys, and where a bad value is.

msgspec checks types and constraints, but it names a dict entry `[...]`
(`pools[...].max`) and the top-level settings struct cannot forbid unknown
keys (one fleet.toml serves every service, each skipping the others'
sections). These walks give the dotted key an operator can fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

KeyPath = tuple[str, ...]
"""A dotted key as its parts: ("pools", "h100", "max")."""


def _unwrap(tp: Any) -> Any:
    """`tp` without Annotated[...] and without `| None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _struct(tp: Any) -> type[msgspec.Struct] | None:
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _dict_values(tp: Any) -> Any | None:
    """The value type of a `dict[str, V]` setting, else None."""
    tp = _unwrap(tp)
    return get_args(tp)[1] if get_origin(tp) is dict and len(get_args(tp)) == 2 else None


def field_types(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """The keys a settings table of type `kind` accepts, with their types."""
    return {f.encode_name: f.type for f in msgspec.structs.fields(kind)}


def unknown_key(data: Mapping[str, Any], kind: type[Any]) -> tuple[KeyPath, list[str]] | None:
    """The first key of `data` that no table of `kind` knows, with the keys valid there.

    The top level is lenient (one fleet.toml serves every service, so a service
    skips the others' sections); every table below it is strict, so a misspelt
    key fails at start instead of being silently ignored."""
    return _unknown_in_struct(data, kind, (), strict=False)


def _unknown_in_struct(
    data: Mapping[str, Any], kind: type[Any], path: KeyPath, strict: bool
) -> tuple[KeyPath, list[str]] | None:
    fields = field_types(kind)
    for key, value in data.items():
        if key not in fields:
            if strict:
                return (*path, str(key)), sorted(fields)
            continue
        found = _unknown_in(value, fields[key], (*path, str(key)))
        if found:
            return found
    return None


def _unknown_in(value: Any, tp: Any, path: KeyPath) -> tuple[KeyPath, list[str]] | None:
    if not isinstance(value, Mapping):
        return None
    if (struct := _struct(tp)) is not None:
        return _unknown_in_struct(value, struct, path, strict=True)
    if (values := _dict_values(tp)) is not None:
        for key, item in value.items():
            found = _unknown_in(item, values, (*path, str(key)))
            if found:
                return found
    return None


def pinpoint(value: Any, tp: Any, path: KeyPath) -> tuple[KeyPath, str] | None:
    """The deepest part of `value` that fails to convert on its own, and msgspec's reason.

    msgspec's error paths write `[...]` for a dict key (`pools[...].max`); converting
    the parts one by one finds which pool it was."""
    try:
        msgspec.convert(value, tp, strict=False)
        return None
    except msgspec.ValidationError as exc:
        reason = str(exc)
    if isinstance(value, Mapping):
        parts: list[tuple[str, Any, Any]] = []
        if (struct := _struct(tp)) is not None:
            types = field_types(struct)
            parts = [(k, v, types[k]) for k, v in value.items() if k in types]
        elif (values := _dict_values(tp)) is not None:
            parts = [(str(k), v, values) for k, v in value.items()]
        for key, item, item_tp in parts:
            found = pinpoint(item, item_tp, (*path, key))
            if found:
                return found
    return path, reason


def given_at(data: Mapping[str, Any], path: KeyPath) -> bool:
    """Whether the nested `data` holds the dotted key `path`."""
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
