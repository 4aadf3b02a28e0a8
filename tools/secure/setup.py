"""A secured deployment from fleet.toml: its plan, identities, server authorization and
each identity's connection settings (what `fleet up --secure` and `fleet init` share)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kit.config import STATE_DIR, load_settings
from tools.configcheck import settings_type
from tools.secure.admin import Plan
from tools.secure.grants import Deployment, grants
from tools.secure.identities import ADMIN, OPERATOR, Identity, ensure_identities
from tools.secure.natsconf import render_auth

CREDS_DIR = Path(STATE_DIR) / "creds"
AUTH_FILE = "auth.conf"
SEED_ENV = "FLEET_NATS__NKEYS_SEED"
INBOX_ENV = "FLEET_NATS__INBOX_PREFIX"


@dataclass(frozen=True)
class Secured:
    """A deployment's identities and the authorization file written for them."""

    identities: dict[str, Identity]
    auth_file: Path


def plan_from_config(config: str | None) -> tuple[Plan, Deployment]:
    """What `fleet init` creates and whom the grants name, from fleet.toml and FLEET_*."""
    prov: Any = load_settings(settings_type("provisioner"), config)
    runner: Any = load_settings(settings_type("runner"), config)
    attempts = prov.provisioner.command_attempts + 2  # the provisioner's own rule
    plan = Plan(
        replicas=prov.nats.replicas,
        lease_s=prov.lease.lease_s,
        pools=tuple(sorted(prov.pools)),
        agents=tuple(runner.runner.agents),
        session_idle_s=runner.runner.session_idle_s,
        kv_storage=runner.runner.kv_storage,
        retention=(prov.retention.days, prov.retention.rollup_days, prov.retention.metrics_days),
        overrides={
            "provisioner-approved": {
                "ack_wait_s": prov.provisioner.ack_wait_s,
                "max_deliver": float(attempts),
            }
        },
    )
    return plan, Deployment(agents=plan.agents, tenants=tuple(prov.nats.tenants))


def write_secured(config: str | None, creds_dir: Path = CREDS_DIR) -> Secured:
    """Identities under `creds_dir` (kept if present) and `creds_dir/auth.conf` for them."""
    _, deployment = plan_from_config(config)
    identities = ensure_identities(creds_dir, list(deployment.tenants))
    auth = creds_dir / AUTH_FILE
    auth.write_text(render_auth(identities, grants(deployment)))
    os.chmod(auth, 0o600)
    return Secured(identities, auth)


def identity_env(identity: Identity) -> dict[str, str]:
    """The settings that make a service (or the CLI) connect as `identity`, and only bind
    to the JetStream resources `fleet init` created."""
    return {
        SEED_ENV: str(identity.seed_file.resolve()),
        INBOX_ENV: identity.inbox_prefix,
        "FLEET_NATS__CREATE_RESOURCES": "false",
    }


def unit_env(config: str | None, runner: Identity, worker: Identity) -> dict[str, str]:
    """The provisioner's settings that make the processes its `local` providers start
    connect as `worker` (GPU job workers) and `runner` (hosted-agent runners), not as the
    provisioner they inherit from."""
    prov: Any = load_settings(settings_type("provisioner"), config)
    out = {}
    for name, section in prov.providers.items():
        if section.get("kind", name) == "local":
            for key, identity in (("env", worker), ("agent_env", runner)):
                table = {**section.get(key, {}), **identity_env(identity)}
                inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
                out[f"FLEET_PROVIDERS__{name.upper()}__{key.upper()}"] = "{" + inline + "}"
    return out


def cli_identity(creds_dir: Path = CREDS_DIR) -> tuple[str, str] | None:
    """(seed file, inbox prefix) the CLI connects with: FLEET_NATS__NKEYS_SEED if set,
    else the operator's seed of a `fleet up --secure` in this directory; None for none."""
    seed = os.environ.get(SEED_ENV, "")
    if seed:
        return seed, os.environ.get(INBOX_ENV, "_INBOX")
    path = creds_dir / f"{OPERATOR}.nk"
    if path.is_file():
        return str(path.resolve()), f"_INBOX.{OPERATOR}"
    return None


def admin_seed(creds_dir: Path = CREDS_DIR) -> Path | None:
    """The admin's seed file, if this directory has one."""
    path = creds_dir / f"{ADMIN}.nk"
    return path if path.is_file() else None


def cli_identity_name() -> str | None:
    """The name of the identity the CLI connects as (`operator`, a tenant), if any: what
    it calls agents as, since a secured server lets it publish only its own rpc subject."""
    found = cli_identity()
    if found is None or not found[1].startswith("_INBOX."):
        return None
    return found[1].removeprefix("_INBOX.")
