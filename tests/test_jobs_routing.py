"""Where jobs go: the pure router (fits, cheapest, budget by priority), the delivery plan
of a unit, and the backlog folded into PoolMetrics."""

from __future__ import annotations

from contracts.jobs import Job, JobEvent, JobRequirements
from contracts.telemetry import PoolMetrics
from services.gateway.routing import BudgetView, PoolGpu, RoutePolicy, pool_gpus, route
from services.kit.jobplan import History, history, plan_delivery
from services.kit.jobqueue import PoolDepth
from services.watcher.backlog import with_jobs

H100 = PoolGpu("big", "H100", 80, "NVIDIA", "cuda", 2.49)
L4 = PoolGpu("small", "L4", 24, "NVIDIA", "cuda", 0.39)
MI = PoolGpu("amd", "MI300X", 192, "AMD", "rocm", 2.99)
POOLS = [H100, L4, MI]
POLICY = RoutePolicy()
ROOMY = BudgetView(daily_usd=100, hard_cap_usd=150, spent_today_usd=10, projected_today_usd=20)


def job(**kw: object) -> Job:
    reqs = kw.pop("requirements", {})
    return Job(id="j1", requirements=JobRequirements(**reqs), **kw)  # type: ignore[arg-type]


def test_the_cheapest_pool_that_meets_the_requirements_gets_the_job() -> None:
    assert route(job(), POOLS, ROOMY, POLICY).pool == "small"
    assert route(job(requirements={"min_vram_gb": 40}), POOLS, ROOMY, POLICY).pool == "big"
    assert route(job(requirements={"runtime": "rocm"}), POOLS, ROOMY, POLICY).pool == "amd"
    assert route(job(requirements={"gpu_models": ["h100"]}), POOLS, ROOMY, POLICY).pool == "big"
    pinned = route(job(pool="big"), POOLS, ROOMY, POLICY)
    assert pinned.decision == "routed" and pinned.pool == "big"
    assert pinned.est_usd == round(2.49 / 3600, 6)


def test_a_job_no_pool_can_run_is_refused_saying_what_each_lacks() -> None:
    r = route(job(requirements={"min_vram_gb": 400}), POOLS, ROOMY, POLICY)
    assert r.decision == "refused" and r.pool is None
    assert "big: 80 GB < 400 GB VRAM" in r.reason and "amd: 192 GB < 400 GB VRAM" in r.reason
    pinned = route(job(pool="small", requirements={"min_vram_gb": 40}), POOLS, ROOMY, POLICY)
    assert pinned.decision == "refused" and "small: 24 GB < 40 GB" in pinned.reason
    unknown = route(job(pool="nope"), POOLS, ROOMY, POLICY)
    assert "unknown pool 'nope'" in unknown.reason
    dear = route(
        job(requirements={"min_vram_gb": 40}, est_s=3600, max_usd=1.0), POOLS, ROOMY, POLICY
    )
    assert dear.decision == "refused" and "max_usd $1.0000" in dear.reason
    assert route(job(), [], ROOMY, POLICY).decision == "refused"


def test_when_the_budget_binds_low_waits_first_then_normal_and_high_runs_to_the_hard_cap() -> None:
    tight = BudgetView(daily_usd=100, hard_cap_usd=150, spent_today_usd=50, projected_today_usd=85)
    assert route(job(priority="low"), POOLS, tight, POLICY).decision == "queued"
    assert route(job(priority="normal"), POOLS, tight, POLICY).decision == "routed"
    low = route(job(priority="low"), POOLS, tight, POLICY)
    assert "waiting for budget" in low.reason and "85%" in low.reason

    over = BudgetView(daily_usd=100, hard_cap_usd=150, spent_today_usd=90, projected_today_usd=120)
    assert route(job(priority="normal"), POOLS, over, POLICY).decision == "queued"
    assert route(job(priority="high"), POOLS, over, POLICY).decision == "routed"

    capped = BudgetView(
        daily_usd=100, hard_cap_usd=150, spent_today_usd=150, projected_today_usd=160
    )
    refused = route(job(priority="high"), POOLS, capped, POLICY)
    assert refused.decision == "refused" and "hard cap" in refused.reason
    assert "high-priority jobs do not wait" in refused.reason
    assert route(job(priority="low"), POOLS, capped, POLICY).decision == "queued"
    # Without the cost-guard's figures only low-priority work waits.
    assert route(job(priority="low"), POOLS, None, POLICY).decision == "queued"
    assert route(job(priority="normal"), POOLS, None, POLICY).decision == "routed"


def test_pools_take_gpu_vram_and_price_from_the_cheapest_live_offer() -> None:
    def offer(provider: str, model: str, vram: float, price: float) -> dict[str, object]:
        return dict(provider=provider, gpu_model=model, vram_gb=vram, usd_per_hour=price)

    offers = [
        {**offer("sim", "H100", 80, 2.49), "vendor": "NVIDIA"},
        {**offer("vast", "H100", 80, 1.9), "vendor": "NVIDIA"},
        {**offer("sim", "L4", 24, 0.39), "vendor": "NVIDIA"},
    ]
    pools = {
        "big": {"gpu_model": "H100", "providers": ["sim"]},
        "cpu": {"gpu_model": "CPU", "max_usd_per_hour": 0.05, "runtime": "cpu"},
    }
    big, cpu = pool_gpus(pools, offers)
    assert big == PoolGpu("big", "H100", 80.0, "NVIDIA", "cuda", 2.49)
    assert cpu == PoolGpu("cpu", "CPU", 0.0, "other", "cpu", 0.05)


def test_a_delivery_runs_until_its_attempts_are_spent_and_names_a_lost_unit() -> None:
    j = job(attempts=3)
    assert plan_delivery(j, 1, History(), 0.0).action == "run"
    started = JobEvent(job="j1", state="started", unit="u7", attempt=1)
    lost = plan_delivery(j, 2, history([started]), 0.0)
    assert lost.action == "run"
    assert lost.reasons == ("attempt 1: u7 stopped answering; redelivered after the ack wait",)
    failures = [
        JobEvent(job="j1", state="failed", unit="u1", attempt=n, reason="exit 1") for n in (1, 2, 3)
    ]
    dead = plan_delivery(j, 4, history(failures), 0.0)
    assert dead.action == "dead"
    assert dead.reasons == ("attempt 1: exit 1", "attempt 2: exit 1", "attempt 3: exit 1")
    done = JobEvent(job="j1", state="succeeded", unit="u1", attempt=1)
    assert plan_delivery(j, 2, history([started, done]), 0.0).action == "settled"
    assert plan_delivery(job(deadline_ts=10.0), 1, History(), 11.0).action == "expired"


def test_backlog_is_demand_the_scaler_sees_as_queue() -> None:
    m = PoolMetrics(pool="p", inflight=4, capacity=4, queue_depth=1)
    depth = PoolDepth(queued={"high": 10, "low": 90}, running=4, oldest_job_age_s=12.5)
    folded = with_jobs(m, depth)
    assert folded.queue_depth == 101 and folded.inflight == 4
    assert (folded.jobs_queued, folded.jobs_running, folded.oldest_job_age_s) == (100, 4, 12.5)
    assert with_jobs(m, None) == m


def test_the_brains_card_lists_the_jobs_skill_and_its_tools_the_operations() -> None:
    from contracts.api.tools import BRAIN_TOOLS, MCP_TOOLS
    from services.brain.service import brain_card

    card = brain_card(
        "nats://127.0.0.1:4222", "claude-sonnet-4-5"
    )  # with a model: rule mode lists only what it does
    skill = next(s for s in card.skills if s.id == "jobs")
    assert "cheapest pool" in skill.description
    for table in (BRAIN_TOOLS, MCP_TOOLS):
        assert table["submit_job"] == "jobs.submit" and table["queue_status"] == "jobs.queue"
