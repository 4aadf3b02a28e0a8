"""A2A 1.0 wire types for the NATS binding (`a2a.<agent>.rpc|card|tasks.<id>`).

The JSON is the A2A 1.0 JSON-RPC binding: camelCase fields, enums as their
proto names (`TASK_STATE_COMPLETED`, `ROLE_USER`), ISO-8601 UTC timestamps, a
Part carrying exactly one of text, raw (base64), url or data. Fields left at
their default are omitted, as protobuf's JSON mapping does, so the official
`a2a-sdk` parses every document here without loss.

JSON-RPC envelopes and the spec's error codes are here too; methods and their
v0.3 aliases are listed in `METHODS` / `V03_ALIASES`.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

A2A_VERSION = "1.0"
"""The protocol version this binding speaks (the `A2A-Version` header)."""
NATS_BINDING = "NATS+JSONRPC"
"""`protocolBinding` of the AgentCard entry for this binding."""

HEADER_VERSION = "A2A-Version"
HEADER_TENANT = "Fleet-Tenant"
HEADER_STREAM_END = "A2A-Stream-End"
"""Header of the empty message that closes a stream on the reply inbox."""
HEADER_SERVE_CHECK = "Fleet-Serve-Check"
"""Header of the card request with which the gateway checks that a new hosted agent is
served: a runner that cannot serve it answers that request, and only that one, with
`{"error": {"code": 503, "message": why}}` (services.runner.dynamic)."""


class TaskState(enum.StrEnum):
    """A task's lifecycle state, as the proto enum names it."""

    UNSPECIFIED = "TASK_STATE_UNSPECIFIED"
    SUBMITTED = "TASK_STATE_SUBMITTED"
    WORKING = "TASK_STATE_WORKING"
    COMPLETED = "TASK_STATE_COMPLETED"
    FAILED = "TASK_STATE_FAILED"
    CANCELED = "TASK_STATE_CANCELED"
    INPUT_REQUIRED = "TASK_STATE_INPUT_REQUIRED"
    REJECTED = "TASK_STATE_REJECTED"
    AUTH_REQUIRED = "TASK_STATE_AUTH_REQUIRED"


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED}
)
INTERRUPTED_STATES: frozenset[TaskState] = frozenset(
    {TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED}
)
"""States where the agent waits for the client: a blocking call returns, a stream ends."""


class Role(enum.StrEnum):
    UNSPECIFIED = "ROLE_UNSPECIFIED"
    USER = "ROLE_USER"
    AGENT = "ROLE_AGENT"


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """camelCase on the wire; defaults omitted as protobuf JSON does."""


def iso_now() -> str:
    """Now as an ISO-8601 UTC timestamp with milliseconds (`2025-01-01T00:00:00.000Z`)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Part(_Wire):
    """One piece of content: exactly one of text, raw bytes, url or structured data."""

    text: str | None = None
    raw: bytes | None = None
    """Inline file bytes; base64 in JSON."""
    url: str | None = None
    """A file by reference."""
    data: Any = None
    """Any JSON value (objects for tool results, placements, stats)."""
    metadata: dict[str, Any] | None = None
    filename: str | None = None
    media_type: str | None = None

    def __post_init__(self) -> None:
        present = sum(x is not None for x in (self.text, self.raw, self.url, self.data))
        if present != 1:
            raise ValueError("a Part carries exactly one of text, raw, url or data")


class Message(_Wire):
    """One turn of the conversation, from the user or the agent."""

    message_id: str
    role: Role
    parts: list[Part]
    context_id: str | None = None
    task_id: str | None = None
    metadata: dict[str, Any] | None = None
    extensions: list[str] = msgspec.field(default_factory=list)
    reference_task_ids: list[str] = msgspec.field(default_factory=list)


class TaskStatus(_Wire):
    state: TaskState
    message: Message | None = None
    timestamp: str | None = None
    """ISO-8601 UTC."""


class Artifact(_Wire):
    """An output of the task."""

    artifact_id: str
    parts: list[Part]
    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    extensions: list[str] = msgspec.field(default_factory=list)


class Task(_Wire):
    id: str
    status: TaskStatus
    context_id: str | None = None
    artifacts: list[Artifact] = msgspec.field(default_factory=list)
    history: list[Message] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = None


class TaskStatusUpdateEvent(_Wire):
    task_id: str
    context_id: str
    status: TaskStatus
    metadata: dict[str, Any] | None = None


class TaskArtifactUpdateEvent(_Wire):
    task_id: str
    context_id: str
    artifact: Artifact
    append: bool = False
    """Append these parts to the artifact with the same id instead of replacing it."""
    last_chunk: bool = False
    metadata: dict[str, Any] | None = None


class StreamResponse(_Wire):
    """One event of a stream: exactly one field is set."""

    task: Task | None = None
    message: Message | None = None
    status_update: TaskStatusUpdateEvent | None = None
    artifact_update: TaskArtifactUpdateEvent | None = None


class SendMessageResponse(_Wire):
    task: Task | None = None
    message: Message | None = None


# -- requests (the JSON-RPC params) ------------------------------------------------


class SendMessageConfiguration(_Wire):
    accepted_output_modes: list[str] = msgspec.field(default_factory=list)
    history_length: int | None = None
    return_immediately: bool = False
    """Reply with the submitted task at once instead of waiting for it to finish."""


class SendMessageRequest(_Wire):
    message: Message
    tenant: str | None = None
    configuration: SendMessageConfiguration | None = None
    metadata: dict[str, Any] | None = None


class GetTaskRequest(_Wire):
    id: str
    tenant: str | None = None
    history_length: int | None = None


class ListTasksRequest(_Wire):
    tenant: str | None = None
    context_id: str | None = None
    status: TaskState | None = None
    page_size: int | None = None
    page_token: str | None = None
    history_length: int | None = None
    status_timestamp_after: str | None = None
    include_artifacts: bool | None = None


class ListTasksResponse(msgspec.Struct, rename="camel", kw_only=True):
    """A page of tasks; every field is written, as the spec marks them required."""

    tasks: list[Task]
    next_page_token: str = ""
    page_size: int = 0
    total_size: int = 0


class CancelTaskRequest(_Wire):
    id: str
    tenant: str | None = None
    metadata: dict[str, Any] | None = None


class SubscribeToTaskRequest(_Wire):
    id: str
    tenant: str | None = None


# -- the agent card ------------------------------------------------------------------


class AgentInterface(_Wire):
    url: str
    """For the NATS binding: `nats://<server>/a2a.<agent>.rpc` (the subject is the path)."""
    protocol_binding: str
    protocol_version: str
    """REQUIRED by the spec, so never a default (`_Wire` omits defaults): `A2A_VERSION`."""
    tenant: str | None = None


class AgentProvider(_Wire):
    organization: str
    url: str


class AgentCapabilities(_Wire):
    streaming: bool | None = None
    push_notifications: bool | None = None
    extended_agent_card: bool | None = None


class AgentSkill(_Wire):
    id: str
    name: str
    description: str
    tags: list[str]
    examples: list[str] = msgspec.field(default_factory=list)
    input_modes: list[str] = msgspec.field(default_factory=list)
    output_modes: list[str] = msgspec.field(default_factory=list)


class AgentCard(_Wire):
    name: str
    description: str
    supported_interfaces: list[AgentInterface]
    version: str
    capabilities: AgentCapabilities
    default_input_modes: list[str]
    default_output_modes: list[str]
    skills: list[AgentSkill]
    provider: AgentProvider | None = None
    documentation_url: str | None = None
    icon_url: str | None = None


class AgentCardRequest(msgspec.Struct, kw_only=True):
    """The (empty) request on `a2a.<agent>.card`."""


# -- JSON-RPC 2.0 envelopes ------------------------------------------------------------

RpcId = str | int | None


class JsonRpcRequest(msgspec.Struct, kw_only=True):
    """A call on `a2a.<agent>.rpc`."""

    jsonrpc: Literal["2.0"]
    method: str
    id: RpcId = None
    params: dict[str, Any] | None = None


class JsonRpcError(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class JsonRpcErrorResponse(msgspec.Struct, kw_only=True):
    id: RpcId
    error: JsonRpcError
    jsonrpc: Literal["2.0"] = "2.0"


class JsonRpcResponse(msgspec.Struct, kw_only=True):
    """A successful answer; `result` is the method's result type (Task, StreamResponse...)."""

    id: RpcId
    result: Any
    jsonrpc: Literal["2.0"] = "2.0"


# -- error codes (JSON-RPC 2.0 and A2A 1.0) -----------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASK_NOT_FOUND = -32001
TASK_NOT_CANCELABLE = -32002
PUSH_NOTIFICATION_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
CONTENT_TYPE_NOT_SUPPORTED = -32005
INVALID_AGENT_RESPONSE = -32006
EXTENDED_CARD_NOT_CONFIGURED = -32007
EXTENSION_SUPPORT_REQUIRED = -32008
VERSION_NOT_SUPPORTED = -32009
RATE_LIMITED = -32029
"""fleetplane: the tenant sent more requests per minute than it may (server-error range)."""
QUOTA_EXCEEDED = -32030
"""fleetplane: the tenant has as many tasks running as its quota allows."""

METHODS: tuple[str, ...] = (
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
)
V03_ALIASES: dict[str, str] = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/get": "GetTask",
    "tasks/list": "ListTasks",
    "tasks/cancel": "CancelTask",
    "tasks/resubscribe": "SubscribeToTask",
}
STREAMING_METHODS: frozenset[str] = frozenset({"SendStreamingMessage", "SubscribeToTask"})
NOT_OFFERED: dict[str, int] = {
    "CreateTaskPushNotificationConfig": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "GetTaskPushNotificationConfig": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "ListTaskPushNotificationConfigs": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "DeleteTaskPushNotificationConfig": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "tasks/pushNotificationConfig/set": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "tasks/pushNotificationConfig/get": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "tasks/pushNotificationConfig/list": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "tasks/pushNotificationConfig/delete": PUSH_NOTIFICATION_NOT_SUPPORTED,
    "GetExtendedAgentCard": EXTENDED_CARD_NOT_CONFIGURED,
    "agent/getAuthenticatedExtendedCard": EXTENDED_CARD_NOT_CONFIGURED,
}
"""The spec's methods (A2AService in the official proto, and their v0.3 names) that these
agents do not offer, with the error the spec gives for each: the card says so too
(`pushNotifications` and `extendedAgentCard` false). Any other name is -32601."""


def text_part(text: str) -> Part:
    """A text Part."""
    return Part(text=text)


def data_part(data: Any) -> Part:
    """A structured-data Part."""
    return Part(data=data, media_type="application/json")


def message_text(message: Message) -> str:
    """The text parts of a message, joined by newlines."""
    return "\n".join(p.text for p in message.parts if p.text is not None)


__all__ = [
    "A2A_VERSION",
    "AgentCapabilities",
    "AgentCard",
    "AgentInterface",
    "AgentProvider",
    "AgentSkill",
    "Artifact",
    "JsonRpcError",
    "JsonRpcErrorResponse",
    "JsonRpcRequest",
    "JsonRpcResponse",
    "Message",
    "Part",
    "Role",
    "StreamResponse",
    "Task",
    "TaskArtifactUpdateEvent",
    "TaskState",
    "TaskStatus",
    "TaskStatusUpdateEvent",
]
