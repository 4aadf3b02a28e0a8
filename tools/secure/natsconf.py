"""The nats-server authorization of a secured deployment, written from the grants.

One account (`FLEET`, JetStream enabled) with one nkey user per identity. The
file holds public keys and permissions only; `fleet up --secure` includes it in
the embedded server's config, and a cluster's server config can include the same
file (deploy/k8s: `fleet init --secure --print-auth` renders it).
"""

from __future__ import annotations

import json

from tools.secure.grants import Permissions
from tools.secure.identities import Identity

ACCOUNT = "FLEET"


def _list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def user_entry(identity: Identity, perms: Permissions | None) -> str:
    """One `users` entry: the identity's public key and, unless it is the admin, its
    allow lists (anything not allowed is refused)."""
    head = f"      # {identity.name}\n      {{ nkey: {identity.public_key}"
    if perms is None:
        return head + " }"
    return (
        f"{head}, permissions: {{\n"
        f"          publish: {{ allow: {_list(perms.publish)} }}\n"
        f"          subscribe: {{ allow: {_list(perms.subscribe)} }}\n"
        "      } }"
    )


def render_auth(identities: dict[str, Identity], grants: dict[str, Permissions | None]) -> str:
    """The `accounts` block for every identity that has a grant."""
    missing = sorted(set(grants) - set(identities))
    if missing:
        raise ValueError(f"no identity for {', '.join(missing)}")
    users = ",\n".join(user_entry(identities[name], perms) for name, perms in grants.items())
    return (
        "# Written by `fleet up --secure` / `fleet init --identities` from\n"
        "# tools/secure/grants.py; public keys only. Each identity's seed is\n"
        "# .fleet/creds/<name>.nk (0600).\n"
        f"accounts {{\n  {ACCOUNT} {{\n    jetstream: enabled\n    users: [\n{users}\n"
        "    ]\n  }\n}\n"
    )
