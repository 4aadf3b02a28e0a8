"""The `fleet.api` request/reply operations: requests, replies, the operations table
and the tool names built on it. See `contracts.api.ops` for the table."""

from contracts.api.ops import BY_NAME, OPS, Op, op
from contracts.api.replies import ApiError, CommandAnswer, ErrorBody
from contracts.api.requests import (
    CleanupIdleCall,
    HealthQuery,
    NoArgs,
    PoolQuery,
    ProvisionCall,
    ReleaseCall,
    UnitsQuery,
)

__all__ = [
    "BY_NAME",
    "OPS",
    "ApiError",
    "CleanupIdleCall",
    "CommandAnswer",
    "ErrorBody",
    "HealthQuery",
    "NoArgs",
    "Op",
    "PoolQuery",
    "ProvisionCall",
    "ReleaseCall",
    "UnitsQuery",
    "op",
]
