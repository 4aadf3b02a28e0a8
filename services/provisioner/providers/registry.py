"""Provider names to adapters.

Each provider module exposes `build(settings) -> Provider`; the registry
imports it on first use, so a deployment that never rents from RunPod never
imports its adapter. `sim` and `local` follow the same convention in their
own modules (`sim.py`, `local.py`); `register()` adds any other at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from services.provisioner.providers.base import Provider
from services.provisioner.providers.settings import ProviderSettings

Factory = Callable[[ProviderSettings], Provider]

MODULES: dict[str, str] = {
    "vastai": "services.provisioner.providers.vastai",
    "ionet": "services.provisioner.providers.ionet",
    "runpod": "services.provisioner.providers.runpod",
    "lambda": "services.provisioner.providers.lambdalabs",
    "hypercore": "services.provisioner.providers.hypercore",
    # Hook: the simulator and the local process runner live beside these and
    # are found the same way, through their module's `build(settings)`.
    "sim": "services.provisioner.providers.sim",
    "local": "services.provisioner.providers.local",
}
"""Provider name -> module holding its `build(settings)`."""

_FACTORIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Make `name` buildable with `factory` (overrides the module convention)."""
    _FACTORIES[name] = factory


def known_providers() -> list[str]:
    """Every provider name the registry can build, sorted."""
    return sorted(set(MODULES) | set(_FACTORIES))


def build_provider(name: str, settings: ProviderSettings | None = None) -> Provider:
    """The adapter for provider `name`; settings default to fleet.toml-less env settings.

    Unknown names raise ValueError listing the known ones. A provider without
    credentials still builds: it reports `available = False` and raises
    Unavailable from its calls.
    """
    settings = settings or ProviderSettings.from_env(name, {})
    if name in _FACTORIES:
        return _FACTORIES[name](settings)
    module_name = MODULES.get(name)
    if module_name is None:
        raise ValueError(
            f"unknown provider {name!r}; known providers: {', '.join(known_providers())}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ValueError(f"provider {name!r} is not installed ({module_name} missing)") from None
    build = getattr(module, "build", None)
    if build is None:
        raise ValueError(f"provider module {module_name} has no build(settings) function")
    provider: Provider = build(settings)
    return provider


def build_all(
    providers_section: Mapping[str, Mapping[str, Any]],
    names: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Provider]:
    """Adapters for `names` (default: every `[providers.*]` section), settings from fleet.toml.

    `providers_section` is fleet.toml's `[providers]` table.
    """
    wanted = names if names is not None else list(providers_section)
    return {
        name: build_provider(
            name, ProviderSettings.from_env(name, providers_section.get(name, {}), environ)
        )
        for name in wanted
    }
