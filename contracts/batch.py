"""Batches: N items of GPU work under a cost cap and a deadline, planned and then run.

`fleet.api.batch.plan` answers with the options (GPU model x count, with wall
time and cost) and the cheapest that meets the deadline and the cap;
`fleet.api.batch.run` carries a plan out through the jobs plane, and every
step of a run (provisioned, progress, released, the summary) is a
`BatchStatus` on `fleet.batch.<id>` (stream FLEET_BATCHES), which is also
what `fleet.api.batch.status` answers with.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Message, Text, Token, Usd
from contracts.commands import MAX_COUNT
from contracts.jobs import MAX_ATTEMPTS

GpuName = Annotated[str, Meta(min_length=1, max_length=64, description="GPU model, e.g. RTX4090")]
BatchId = Annotated[str, Meta(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_-]+$")]
"""One subject token (`fleet.batch.<id>`); short, since job ids are built from it."""

MAX_ITEMS = 10_000_000
"""Most items one batch may hold: far above a real batch, low enough to plan in a blink."""


class PlanBatchCall(msgspec.Struct, frozen=True, kw_only=True):
    """`batch.plan`: what it takes to process `items` items."""

    items: Annotated[int, Meta(ge=1, le=MAX_ITEMS, description="items in the batch")]
    per_item_s: Annotated[
        float,
        Meta(gt=0, le=7 * 86400, description="seconds one item takes on the reference GPU"),
    ]
    ref_gpu: GpuName | None = None
    """The GPU `per_item_s` was measured on; omitted: the first of `gpu_models`, else H100."""
    gpu_models: list[GpuName] = msgspec.field(default_factory=list)
    """GPU models allowed; empty: every model with a live offer and a known speed."""
    max_usd: Usd | None = None
    """Cost cap of the whole batch, USD."""
    deadline_s: Annotated[float, Meta(gt=0, le=30 * 86400)] | None = None
    """Seconds from now by which every item must be done, provisioning included."""
    max_gpus: Annotated[int, Meta(ge=1, le=MAX_COUNT, description="most GPUs to rent")] = 64
    provider: Token | None = None
    """Only this provider's offers."""
    lead_time_s: Annotated[float, Meta(ge=0, le=86400)] | None = None
    """Seconds from asking for a unit to it working; omitted: the scaler's learned figure
    for the pool, else the pool's `lead_time_s`."""


class BatchOption(msgspec.Struct, frozen=True, kw_only=True):
    """One way to run the batch: `count` units of `gpu_model`."""

    gpu_model: str
    count: int
    wall_s: float
    """Seconds from the request to the last item done: lead time plus processing."""
    cost_usd: float
    """Every unit billed from request to release, rounded up to the billing period."""
    usd_per_hour: float
    """One unit's price, the model's cheapest live offer."""
    provider: str
    lead_time_s: float
    billing_s: float
    per_item_s: float
    """Seconds one item takes on this model."""
    meets_deadline: bool = True
    within_cap: bool = True


class BatchPlan(msgspec.Struct, frozen=True, kw_only=True):
    """`batch.plan`'s answer: the options, the chosen one, and why (or why none)."""

    ok: bool
    """Whether an option meets both the deadline and the cap."""
    reason: str
    items: int
    per_item_s: float
    ref_gpu: str
    options: list[BatchOption]
    chosen: BatchOption | None = None
    instead: list[BatchOption] = msgspec.field(default_factory=list)
    """When none fits: the nearest options (a larger cap, or a later deadline)."""
    max_usd: float | None = None
    deadline_s: float | None = None
    notes: list[str] = msgspec.field(default_factory=list)
    """Models left out, and why (no live offer, no speed figure)."""
    pool: str | None = None
    """The pool the chosen option would run in."""


class RunBatchCall(PlanBatchCall, frozen=True, kw_only=True):
    """`batch.run`: plan (or take `option`) and carry it out through the jobs plane."""

    option: BatchOption | None = None
    """Run exactly this option (a plan's `chosen`, from `fleet batch plan --json`)."""
    id: BatchId | None = None
    """Idempotency and the subject `fleet.batch.<id>`; omitted: a new id."""
    jobs_per_gpu: Annotated[int, Meta(ge=1, le=1000)] = 8
    """The items are split into this many jobs per GPU: smaller jobs lose less to a
    retry and report progress more often, larger ones cost less overhead."""
    attempts: Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS)] = 3
    """Deliveries of each job before it is given up (the jobs plane's retries)."""
    progress_every_s: Annotated[float, Meta(ge=1, le=86400)] = 1800.0
    """Seconds between progress events on `fleet.batch.<id>` (the guide's 30 minutes)."""
    requester: Token = "api"
    wait_s: Annotated[float, Meta(ge=0, le=120)] = 10.0
    """How long to wait for the cost-guard's verdict before answering, seconds."""


BatchState = Literal[
    "provisioning", "waiting", "running", "releasing", "succeeded", "failed", "refused"
]
"""`waiting`: a person must approve the provision (`fleet approve ID`)."""
FINISHED_BATCH_STATES: frozenset[str] = frozenset({"succeeded", "failed", "refused"})


class BatchStatus(Message, frozen=True, kw_only=True):
    """A run's state on `fleet.batch.<id>`: each step, progress every `progress_every_s`,
    and the summary of actual against planned time and cost when it ends."""

    id: BatchId
    state: BatchState
    reason: Text = ""
    pool: str = ""
    option: BatchOption | None = None
    """What was planned: model, count, wall time and cost."""
    items: int = 0
    items_done: int = 0
    items_failed: int = 0
    jobs: int = 0
    jobs_done: int = 0
    jobs_failed: int = 0
    retries: int = 0
    provision_id: str = ""
    units: list[str] = msgspec.field(default_factory=list)
    """The units the batch rented."""
    units_live: int = 0
    """Of those, the ones not yet terminated."""
    started_ts: float = 0.0
    elapsed_s: float = 0.0
    actual_usd: Usd = 0.0
    """Spend of the batch's units so far (billed from booting to terminated)."""
    finished: bool = False


class BatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A run's durable state (bucket `fleet_batches`, key = its id): what a gateway that
    takes the run over needs to carry it on where the last one stopped. The rest (items
    done, retries, what the units cost) is rebuilt from the job and unit events."""

    id: BatchId
    call: RunBatchCall
    option: BatchOption
    pool: str
    provision_id: str
    """The id of the provision request, fixed before it is sent (`prov-<id>`)."""
    opened_ts: float
    """When the run was asked for: its events are read from the streams from here on."""
    started_ts: float
    """When the plan's clock started (at the approval of a held provision)."""
    approved: bool = False
    submitted: int = 0
    """Jobs handed to the jobs plane so far: `<id>-<k>` for every k below it."""
    status: BatchStatus | None = None
    """The latest step published on `fleet.batch.<id>`."""

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.finished


class BatchRunReply(msgspec.Struct, frozen=True, kw_only=True):
    """`batch.run`'s answer: the run started (or why not), and where to follow it."""

    ok: bool
    id: str
    reason: str
    subject: str
    """`fleet.batch.<id>`: the run's events."""
    plan: BatchPlan | None = None
    status: BatchStatus | None = None


class BatchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`batch.status`: one run by id, or the latest runs."""

    id: BatchId | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 10


class BatchesReply(msgspec.Struct, frozen=True, kw_only=True):
    """`batch.status`: each run's latest event, newest first."""

    runs: list[BatchStatus]


__all__ = [
    "FINISHED_BATCH_STATES",
    "MAX_ITEMS",
    "BatchId",
    "BatchOption",
    "BatchPlan",
    "BatchQuery",
    "BatchRecord",
    "BatchRunReply",
    "BatchState",
    "BatchStatus",
    "BatchesReply",
    "PlanBatchCall",
    "RunBatchCall",
]
