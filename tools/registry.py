"""Which services exist, in start order, and how to load one."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

ORDER = ("watcher", "scaler", "costguard", "provisioner", "gateway", "brain", "runner")
"""Start order for `fleet up`: consumers of a subject start before its producers."""

EMBEDDED = ("watcher", "scaler", "costguard", "provisioner", "gateway", "brain")
"""What `fleet up` runs; runners are units the provisioner starts through `local`."""


def available(names: tuple[str, ...] = ORDER) -> list[str]:
    """The services of `names` whose package has a service module."""
    out = []
    for name in names:
        try:
            if importlib.util.find_spec(f"services.{name}.service") is not None:
                out.append(name)
        except ModuleNotFoundError:
            continue
    return out


def load(name: str) -> Any:
    """The Service class of `name` (its module's SERVICE)."""
    if name not in ORDER:
        raise KeyError(f"unknown service {name!r}; services: {', '.join(ORDER)}")
    module = importlib.import_module(f"services.{name}.service")
    return module.SERVICE
