"""The A2A binding over NATS, server and client: a library package at the same layer as
services.kit (it imports contracts and services.kit only); services mount agents with
it and tools call agents with its client (services.a2a.client)."""

from services.a2a.context import A2AEvent, Executor, TaskContext
from services.a2a.server import A2AServer, nats_interface
from services.a2a.tenants import A2ASettings, Refused, TenantLimits

__all__ = [
    "A2AEvent",
    "A2AServer",
    "A2ASettings",
    "Executor",
    "Refused",
    "TaskContext",
    "TenantLimits",
    "nats_interface",
]
