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
from typing import Any, Literal

import msgspec

DEFAULT_URLS: dict[str, str] = {
    "vastai": "https://console.vast.ai",
    "ionet": "https://api.io.solutions",
    "runpod": "https://api.runpod.io",
    "lambda": "https://cloud.lambda.ai/api/v1",
    "hypercore": "",
}
"""Public API roots, as each provider's reference names them (November 2026). Vast.ai's
is the origin: v0 calls go under `/api/v0`, the instance list under `/api/v1` (a root
ending in `/api/v0` is accepted too). RunPod's REST v2 paths start with `/v2`. Lambda's
old host `cloud.lambdalabs.com` is deprecated in its OpenAPI `servers`. Hypercore has
none: it is a node of your own, so its URL must be set."""

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
    create_confirm_s: float = 60.0
    """After a create whose answer was lost (timeout, empty reply), how long to wait for
    the unit to show in the provider's list before creating again, in seconds. Longer
    than any provider's list lag; shorter than an operator's patience."""
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
    vm_image_type: Literal["general", "datascience"] = "general"
    """io.net: VM image type, `general` or `datascience` (the only values its deploy
    reference allows; anything else gets a 422)."""
    cloud_type: str = "SECURE"
    """RunPod: SECURE or COMMUNITY cloud."""
    usd_per_core_hour: float = 0.02
    """Hypercore: what one vCPU costs per hour on your own node, for cost accounting."""
    cores: int = 2
    """Hypercore: vCPUs per microVM."""
    memory_mb: int = 2048
    """Hypercore: memory per microVM in MB."""
    image_ref: str = "docker.io/library/python:3.11-slim"
    """Hypercore: image the microVM boots."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    """Hypercore: environment of every microVM besides what the adapter sets (its label,
    and for a runner its pool and unit), e.g. `FLEET_NATS_URL`, where its runner reaches
    NATS from inside the VM."""
    list_lag_s: float = 10.0
    """Hypercore: how long `/list` may not yet show a workload after its spawn. Nodes
    broadcast their state every 5 s (WorkloadBroadcastPeriod); 10 s leaves room for gossip."""

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
