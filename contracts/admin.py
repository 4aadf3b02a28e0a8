"""What a secured deployment's admin does for the services at run time.

In a secured deployment only the admin identity may create KV buckets, and the
server's permissions are written for the hosted agents known at start
(docs/adr/0013-least-privilege.md). A hosted agent created at runtime needs
both: the gateway asks for them on `fleet.admin.agents` before the agent exists,
and `fleet up --secure` answers, as the admin.
"""

from __future__ import annotations

import msgspec

from contracts.api.requests import AgentName


class AgentResources(msgspec.Struct, frozen=True, kw_only=True):
    """Make hosted agent `agents.<name>` servable: its buckets, and the runners'
    permissions for its subjects and buckets."""

    name: AgentName


class AgentResourcesReply(msgspec.Struct, frozen=True, kw_only=True):
    """The agent's resources exist and the runners may use them; or why not."""

    name: str
    error: str | None = None
