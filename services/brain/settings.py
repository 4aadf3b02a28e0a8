"""The brain's settings: `[brain]` and `[a2a]`."""

from __future__ import annotations

import msgspec

from contracts.base import Count, NonNegative, Positive, Tries
from services.a2a.tenants import A2ASettings
from services.kit.config import KitSettings

DEFAULT_PROMPT = (
    "You are an autonomous GPU infrastructure manager for fleetplane. You keep GPU pools and "
    "hosted agents at the capacity their load needs, at the lowest cost, inside a hard budget. "
    "Use the tools to look before you act: read stats, health and the budget, compare offers, "
    "place workloads on the cheapest offer that fits, provision or release only when the "
    "numbers call for it, and clean up idle units. Every command that costs money is judged "
    "by the cost-guard; say why you act in one or two sentences before each tool call, and end "
    "with a short answer for the operator."
)


class BrainOptions(msgspec.Struct, kw_only=True):
    """`[brain]`."""

    model: str = "claude-sonnet-4-6"
    """Anthropic model name."""
    system_prompt: str = DEFAULT_PROMPT
    """The model's system prompt."""
    max_steps: Tries = 8
    """Model turns per task; a task still calling tools after this many fails."""
    max_tokens: Tries = 2048
    """Output tokens per model turn."""
    max_task_tokens: Tries = 60_000
    """Input plus output tokens per task; the loop stops when they are spent."""
    max_task_s: Positive = 120.0
    """Wall time per task, seconds."""
    max_provision_units_per_task: Count = 8
    """Units one task may ask for in total, whatever the prompt says."""
    max_usd_per_hour_per_task: NonNegative = 40.0
    """Added burn one task may ask for in total, USD/hour, whatever the prompt says."""
    retries: Count = 4
    """Retries of a model call answered 429, 5xx or overloaded."""
    retry_base_s: NonNegative = 0.5
    """First retry delay, seconds; doubles each retry (with jitter), capped at 8 s."""
    api_timeout_s: Positive = 60.0
    """HTTP timeout of one model call, seconds."""
    routine_interval_s: NonNegative = 300.0
    """Seconds between routine checks; 0 turns them off."""
    idle_cleanup_s: NonNegative = 1800.0
    """Idle threshold of the routine cleanup, seconds."""
    fleet_api_timeout_s: Positive = 15.0
    """How long a tool waits for its fleet.api answer, seconds."""
    followup_check_s: Positive = 5.0
    """Seconds between looks for due follow-up checks; a follow-up runs at most this late."""
    report_timeout_s: Positive = 90.0
    """How long the `report` tool waits: the gateway reads days of streams for it."""
    advisor_timeout_s: Positive = 60.0
    """How long the coordinator waits for each advisor (A2A) before using its rules."""


class BrainSettings(KitSettings, kw_only=True):
    brain: BrainOptions = msgspec.field(default_factory=BrainOptions)
    a2a: A2ASettings = msgspec.field(default_factory=A2ASettings)
