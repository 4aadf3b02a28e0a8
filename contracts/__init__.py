"""The wire: every subject, stream and message of fleetplane, as pure data.

Nothing here does I/O and nothing here imports the rest of fleetplane; services,
tools and outside systems all build on these definitions.
"""

from contracts.base import Message
from contracts.commands import (
    Command,
    DecideReply,
    DecideRequest,
    ProvisionRequest,
    ReleaseRequest,
    ScaleProposal,
    Verdict,
)
from contracts.events import Alert, AuditRecord, DeadLetter, UnitEvent
from contracts.telemetry import PoolMetrics, UnitTelemetry

__all__ = [
    "Alert",
    "AuditRecord",
    "Command",
    "DeadLetter",
    "DecideReply",
    "DecideRequest",
    "Message",
    "PoolMetrics",
    "ProvisionRequest",
    "ReleaseRequest",
    "ScaleProposal",
    "UnitEvent",
    "UnitTelemetry",
    "Verdict",
]
