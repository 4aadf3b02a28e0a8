"""Typed settings of one provider adapter, from fleet.toml and the environment.

Precedence for the base URL and the key, highest first: `FLEET_<NAME>_URL` /
`FLEET_<NAME>_KEY`, the provider's own usual variable (`VAST_API_KEY`, ...),
then fleet.toml `[providers.<name>] base_url, api_key` (or `api_key_file`).
Environment over file, as for every other setting.

The key never appears in a repr, a log line or an exception: `__repr__`
redacts it, and adapters only ever put it in request headers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_URLS: dict[str, str] = {
    "vastai": "https://console.vast.ai/api/v0",
    "ionet": "https://api.io.solutions",
    "runpod": "https://rest.runpod.io/v1",
    "lambda": "https://cloud.lambdalabs.com/api/v1",
    "hypercore": "",
}
"""Public API roots. Hypercore has none: it is a node of your own, so its URL must be set."""

USUAL_KEY_VARS: dict[str, tuple[str, ...]] = {
    "vastai": ("VAST_API_KEY",),
    "ionet": ("IONET_API_KEY", "IO_API_KEY"),
    "runpod": ("RUNPOD_API_KEY",),
    "lambda": ("LAMBDA_API_KEY",),
    "hypercore": (),
}
"""The variables each provider's own CLI or SDK reads; honoured too."""

NEEDS_KEY: frozenset[str] = frozenset({"vastai", "ionet", "runpod", "lambda"})
"""Providers that refuse anonymous calls (hypercore nodes take none)."""


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach one provider and what to ask it for."""

    name: str
    """Provider name as used in fleet.toml and on the wire (`vastai`, `lambda`, ...)."""
    base_url: str = ""
    """API root without a trailing slash; empty means the provider is not configured."""
    api_key: str = ""
    """Secret; redacted from every repr."""
    key_source: str = ""
    """Where the key came from (a variable name or `fleet.toml`), for error messages."""
    timeout_s: float = 15.0
    """Per-request timeout in seconds; providers answer in well under a second when healthy."""
    image: str = "pytorch/pytorch:latest"
    """Container image for Vast.ai instances and RunPod pods."""
    disk_gb: float = 20.0
    """Disk per unit in GB; enough for an image plus model weights of a mid-size model."""
    ssh_key_name: str = ""
    """Lambda: the registered SSH key name that launches require."""
    ssh_public_key: str = ""
    """io.net: public key placed on deployed VMs."""
    location_id: str = ""
    """io.net: location to deploy in; empty takes the hardware's first location."""
    duration_hours: int = 1
    """io.net: rental length per deployment in hours (the first hour is non-refundable)."""
    vm_image_type: str = "ubuntu"
    """io.net: VM image type."""
    cloud_type: str = "SECURE"
    """RunPod: SECURE or COMMUNITY cloud."""
    graphql_url: str = ""
    """RunPod: GraphQL endpoint for GPU prices; empty derives it from base_url."""
    usd_per_core_hour: float = 0.02
    """Hypercore: what one vCPU costs per hour on your own node, for cost accounting."""
    cores: int = 2
    """Hypercore: vCPUs per microVM."""
    memory_mb: int = 2048
    """Hypercore: memory per microVM in MB."""
    image_ref: str = "docker.io/library/python:3.11-slim"
    """Hypercore: image the microVM boots."""

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "''"
        return (
            f"ProviderSettings(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={key}, key_source={self.key_source!r}, timeout_s={self.timeout_s})"
        )

    __str__ = __repr__

    @property
    def configured(self) -> bool:
        """True when there is a URL and, for providers that need one, a key."""
        if not self.base_url:
            return False
        return bool(self.api_key) or self.name not in NEEDS_KEY

    def key_hint(self) -> str:
        """The settings an operator can set to give this provider a key."""
        env = self.name.upper()
        names = [f"FLEET_{env}_KEY", *USUAL_KEY_VARS.get(self.name, ())]
        return " or ".join(names) + f" (or api_key in [providers.{self.name}])"

    def url_hint(self) -> str:
        """The settings an operator can set to give this provider a base URL."""
        return f"FLEET_{self.name.upper()}_URL (or base_url in [providers.{self.name}])"

    @classmethod
    def from_env(
        cls,
        name: str,
        toml_section: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ProviderSettings:
        """Settings for provider `name` from its fleet.toml section and the environment.

        A bad value raises ValueError naming the key and what was expected.
        """
        env = os.environ if environ is None else environ
        section = dict(toml_section or {})
        prefix = f"FLEET_{name.upper()}"
        values: dict[str, Any] = {
            k: v for k, v in section.items() if k not in {"api_key", "api_key_file"}
        }
        values["name"] = name
        base_url = env.get(f"{prefix}_URL") or section.get("base_url") or DEFAULT_URLS.get(name, "")
        values["base_url"] = str(base_url).rstrip("/")

        key, source = "", ""
        for var in (f"{prefix}_KEY", *USUAL_KEY_VARS.get(name, ())):
            if env.get(var):
                key, source = env[var], var
                break
        if not key and section.get("api_key"):
            key, source = str(section["api_key"]), f"[providers.{name}] api_key"
        if not key and section.get("api_key_file"):
            path = Path(str(section["api_key_file"])).expanduser()
            try:
                key = path.read_text().strip()
            except OSError as exc:
                raise ValueError(
                    f"[providers.{name}] api_key_file: cannot read {path}: {exc.strerror}"
                ) from None
            source = f"[providers.{name}] api_key_file"
        values["api_key"] = key
        values["key_source"] = source
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"[providers.{name}] {exc}") from None
