"""Settings of the hosted-agent runner: the `[runner]` section of fleet.toml.

Every key can be overridden from the environment, e.g. `FLEET_RUNNER__MODEL=sim`,
`FLEET_RUNNER__SIM_LATENCY_S=1.0`, `FLEET_RUNNER__UNIT=w-3`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import NonNegative, Positive
from services.a2a.tenants import A2ASettings
from services.kit.config import KitSettings


class RunnerSection(msgspec.Struct, kw_only=True):
    """`[runner]`: which agents this process serves and how."""

    agents: list[str] = msgspec.field(default_factory=lambda: ["assistant"])
    """Hosted agents served, each as A2A agent `agents.<name>`."""
    runtime_agents: bool = True
    """Also serve the agents created at runtime (`fleet agents create`, the `fleet_agents`
    bucket), each with its own system prompt and model, and stop when one is deleted."""
    model: Literal["sim", "anthropic"] = "sim"
    """`sim` (a labelled simulated model, no account needed) or `anthropic` (Claude)."""
    max_sessions: Annotated[int, Meta(ge=1)] = 100
    """Tasks this runner executes at once per agent; its capacity in telemetry and scaling."""
    max_queue: Annotated[int, Meta(ge=0)] = 100
    """Requests that may wait for a free slot here; beyond it the runner leaves the queue
    group until it has room, so NATS sends new work to other runners."""
    tenant_max_sessions: Annotated[int, Meta(ge=1)] = 50
    """Live sessions (conversations not idle for `session_idle_s`) a tenant may hold,
    across every runner of the agent."""
    tenant_rate_limit_per_min: Annotated[int, Meta(ge=1)] = 100
    """Messages a tenant may send per minute to one agent, across every runner (KV bucket
    `fleet_rates`, services.runner.ratelimit); each process also caps every A2A call at it."""
    tenant_rate_chunk: Annotated[int, Meta(ge=1)] = 5
    """Requests a runner takes from the shared count at once (at least 5 % of the limit):
    one KV round trip per this many messages; a runner's unspent grant only admits fewer."""
    session_idle_s: Positive = 1800.0
    """A session unused this long expires with its history (the KV bucket's TTL)."""
    max_history: Annotated[int, Meta(ge=1)] = 40
    """Turns (messages) of a session kept and sent to the model; older ones are dropped."""
    lease_s: Positive = 5.0
    """A runner that has not renewed its lease for this long is presumed dead and its
    running tasks are failed explicitly by a surviving runner."""
    reap_interval_s: Positive = 2.0
    """How often each runner looks for tasks of dead runners."""
    telemetry_interval_s: Positive = 1.0
    """Seconds between UnitTelemetry heartbeats on `fleet.telemetry.<pool>.<unit>`."""
    kv_storage: Literal["file", "memory"] = "file"
    """Storage of the session and lease buckets: `memory` is faster and survives a runner,
    but not a restart of the NATS server."""
    blocking_timeout_s: Positive = 300.0
    """Longest a blocking SendMessage waits for its task before answering as it is."""
    pool: str = ""
    """Pool this runner reports in; empty means `agents-<agent>` (contracts.subjects)."""
    unit: str = ""
    """Unit id in telemetry and unit events; the `local` provider passes it. Empty:
    `<host>-<pid>`."""
    provider: str = "local"
    """Provider name in telemetry."""
    ready_file: str = ""
    """Touched once the runner serves (the `local` provider waits for it)."""
    # -- sim model ---------------------------------------------------------------
    sim_latency_s: NonNegative = 1.0
    """Mean simulated model latency per request, in seconds."""
    sim_latency_dist: Literal["fixed", "uniform", "exponential", "lognormal"] = "fixed"
    """Shape of the simulated latency around its mean."""
    sim_jitter: Annotated[float, Meta(ge=0, le=1)] = 0.1
    """Spread of `uniform` (+- this fraction of the mean) and `lognormal` (sigma)."""
    sim_output_tokens: Annotated[int, Meta(ge=1)] = 48
    """Tokens in a simulated answer."""
    sim_chunks: Annotated[int, Meta(ge=1)] = 1
    """Streamed chunks per simulated answer (each a TaskArtifactUpdateEvent)."""
    # -- anthropic model -----------------------------------------------------------
    anthropic_model: str = "claude-sonnet-4-5"
    """Claude model id for `model = "anthropic"`."""
    max_tokens: Annotated[int, Meta(ge=1)] = 1024
    """Most output tokens per answer."""
    system_prompt: str = "You are a helpful assistant hosted by fleetplane."
    """System prompt of the hosted agent."""
    request_timeout_s: Positive = 120.0
    """Timeout of one Messages API call."""
    tools: list[str] = msgspec.field(default_factory=list)
    """Fleet tools (their MCP names, e.g. `get_gpu_stats`) Claude may call for this agent,
    through fleet.api as the brain does, so money still passes the cost-guard. A call to
    any other tool is refused and audited. An agent made with `fleet agents create --tool`
    has its own list. The simulated model calls no tools."""
    max_tool_steps: Annotated[int, Meta(ge=1, le=50)] = 8
    """Model calls one turn may make while it keeps calling tools; the turn then ends with
    what was said so far and a note, so a model that loops cannot run up cost."""
    fleet_api_timeout_s: Positive = 10.0
    """How long a tool call waits for its fleet.api answer, seconds (a provision waits
    for the cost-guard's verdict)."""


class RunnerSettings(KitSettings, kw_only=True):
    """The runner's settings: the kit's plus `[runner]`."""

    runner: RunnerSection = msgspec.field(default_factory=RunnerSection)


def a2a_settings(section: RunnerSection) -> A2ASettings:
    """The binding's settings for a hosted agent: KV tasks, the tenant limits from `[runner]`."""
    return A2ASettings(
        rate_limit_per_min=section.tenant_rate_limit_per_min,
        max_concurrent_tasks=section.tenant_max_sessions,
        blocking_timeout_s=section.blocking_timeout_s,
        store="kv",
    )
