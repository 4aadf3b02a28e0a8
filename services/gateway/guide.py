"""Pure mapping of the GPU-agent guide's arguments onto fleetplane's own.

The guide names a GPU model and a provider's instance id; fleetplane works in
pools and its own unit names. These functions make that translation from the
configured pools and the provisioner's `units.list` answer; nothing here does I/O.
"""

from __future__ import annotations

import re
from typing import Any

from contracts.subjects import adhoc_pool
from services.kit.pools import PoolConfig


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def pool_for(gpu_model: str, provider: str | None, pools: dict[str, PoolConfig]) -> str:
    """The configured pool that runs `gpu_model` (and uses `provider`, when named), or
    the model's ad-hoc pool when none does.

    "A100" matches a pool of "A100-80GB" (the guide names families); an exact name
    wins over a family match, and the first pool in name order over the later ones.
    """
    want = _squash(gpu_model)
    exact, family = [], []
    for name in sorted(pools):
        view = pools[name]
        if provider is not None and provider not in view.providers:
            continue
        have = _squash(view.gpu_model)
        if have == want:
            exact.append(name)
        elif want and have.startswith(want):
            family.append(name)
    found = exact or family
    return found[0] if found else adhoc_pool(gpu_model)


def find_instance(units: dict[str, Any], provider: str, instance_id: str) -> dict[str, Any] | None:
    """The live unit a provider knows as `instance_id` (our unit name is accepted too)."""
    for u in units.get("units", []):
        if u.get("provider") != provider or u.get("state") in ("terminated", "failed"):
            continue
        if instance_id in (u.get("provider_unit_id"), u.get("unit")):
            found: dict[str, Any] = u
            return found
    return None


def instance_ids(units: dict[str, Any], provider: str) -> list[str]:
    """The provider's ids of its live units, to name in a 'not found' answer."""
    return [
        str(u.get("provider_unit_id") or u.get("unit"))
        for u in units.get("units", [])
        if u.get("provider") == provider and u.get("state") not in ("terminated", "failed")
    ]
