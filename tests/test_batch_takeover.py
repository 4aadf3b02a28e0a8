"""A batch run outlives its gateway: `fleet run gateway` is killed with SIGKILL in the
middle of a run, a new gateway starts, takes the run over from the `fleet_batches`
record and the job and unit events in JetStream, and finishes it: every item done,
every unit released, the cost within 10 % of the plan, the summary published once.

The other services run in process (tests.fleet_helpers); the gateways are real
processes, so the kill leaves no goodbye: no lease given back, no status written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.batch import BatchOption, BatchRecord, BatchStatus, RunBatchCall
from contracts.commands import Verdict
from contracts.events import UnitEvent
from contracts.jobs import JobEvent
from contracts.streams import FLEET_BATCHES
from services.gateway.batchbook import BatchBook
from tests.fleet_helpers import fleet
from tests.provisioner_helpers import Watch
from tests.test_batch_run import POOLS, billed_usd

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[pools.h100]
gpu_model = "H100"
providers = ["sim"]
max_usd_per_hour = 10
min = 0
"""
ITEMS, PER_ITEM_S = 80, 1.0
"""Two RTX 4090s, two jobs of 20 items (20 s) each: a job outlasts the gateway's absence
(the lease's 6 s, and a new process starting on a busy machine)."""
_STEP = msgspec.json.Decoder(BatchStatus)


def gateway(tmp_path: Path, nats_url: str, name: str) -> subprocess.Popen[bytes]:
    """`fleet run gateway` in its own process, its log in tmp_path/<name>.log."""
    env = {
        **os.environ,
        "FLEET_NATS_URL": nats_url,
        "FLEET_CONFIG": str(tmp_path / "fleet.toml"),
        "FLEET_STORE__DIR": str(tmp_path / name),
        "FLEET_LOG__LEVEL": "warning",
    }
    with open(tmp_path / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tools", "run", "gateway"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def api(nc: Client, op: str, body: dict[str, Any], timeout_s: float = 15) -> Any:
    reply = await nc.request(subjects.api(op), json.dumps(body).encode(), timeout=timeout_s)
    answer = json.loads(reply.data)
    assert "error" not in answer, answer
    return answer


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def answering(nc: Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the gateway answers `batch.status` (it may take a while to start under load)."""
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        assert proc.poll() is None, tail(log)
        try:
            await api(nc, "batch.status", {}, 1.0)
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway did not answer within 60 s: {tail(log)}")


async def stored_steps(nc: Client, batch_id: str) -> list[BatchStatus]:
    """Every step of the run kept on its subject in FLEET_BATCHES, in order."""
    js = nc.jetstream()
    info = await js.stream_info(FLEET_BATCHES.name, subjects_filter=subjects.batch(batch_id))
    want = (info.state.subjects or {}).get(subjects.batch(batch_id), 0)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await js.subscribe(subjects.batch(batch_id), ordered_consumer=True, config=config)
    steps = [_STEP.decode((await sub.next_msg(5)).data) for _ in range(want)]
    await sub.unsubscribe()
    return steps


async def test_a_run_whose_gateway_is_killed_is_taken_over_and_finished_once(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    (tmp_path / "fleet.toml").write_text(CONFIG)
    services = fleet(nats_url, tmp_path, POOLS)[:-1]  # every service but the gateway
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    jobs = await Watch(JobEvent).start(nc, subjects.JOB_EVENTS_ALL)
    steps = await Watch(BatchStatus).start(nc, subjects.batch("takeover"))
    for svc in services:
        await svc.start()
    first = gateway(tmp_path, nats_url, "gw1")
    second: subprocess.Popen[bytes] | None = None
    try:
        await answering(nc, first, tmp_path / "gw1.log")
        plan = await api(
            nc,
            "batch.plan",
            {
                "items": ITEMS,
                "per_item_s": PER_ITEM_S,
                "gpu_models": ["RTX4090"],
                "deadline_s": 50,
                "max_gpus": 2,
                "lead_time_s": 1,
            },
        )
        chosen = plan["chosen"]
        assert chosen["count"] == 2, plan
        reply = await api(
            nc,
            "batch.run",
            {
                "id": "takeover",
                "items": ITEMS,
                "per_item_s": PER_ITEM_S,
                "option": chosen,
                "jobs_per_gpu": 2,
                "progress_every_s": 5,
            },
        )
        assert reply["ok"] and reply["status"]["state"] == "provisioning", reply

        # Both GPUs are at work on the first jobs: the gateway dies without a word.
        await jobs.until(
            lambda ev: (
                len({e.job for e in ev if e.state == "started" and e.job.startswith("takeover-")})
                == 2
            ),
            30,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        second = gateway(tmp_path, nats_url, "gw2")
        await answering(nc, second, tmp_path / "gw2.log")
        # The new gateway lists the run from the kept records (it never started it).
        runs = (await api(nc, "batch.status", {}))["runs"]
        assert [r["id"] for r in runs] == ["takeover"] and not runs[0]["finished"], runs

        seen = await steps.until(lambda s: any(x.finished for x in s), 90)
        taken = [s for s in seen if s.reason.startswith("taken over by gateway")]
        assert taken, [s.reason for s in seen]
        done = seen[-1]
        assert done.state == "succeeded", done
        assert (done.items_done, done.items_failed) == (ITEMS, 0), done

        # Every unit the run rented has been released, and the bill matches the plan.
        rented = set(done.units)
        assert len(rented) == chosen["count"], done
        ended = await units.until(
            lambda ev: rented <= {e.unit for e in ev if e.state == "terminated"}, 20
        )
        actual = billed_usd(ended, done.provision_id)
        assert abs(actual - done.actual_usd) < 1e-6
        assert abs(actual - chosen["cost_usd"]) <= 0.10 * chosen["cost_usd"], (
            f"actual ${actual:.6f} vs planned ${chosen['cost_usd']:.6f}"
        )
        # The summary is on the stream once, and the record says the run is over.
        stored = await stored_steps(nc, "takeover")
        assert [s.state for s in stored if s.finished] == ["succeeded"], stored
        status = (await api(nc, "batch.status", {"id": "takeover"}))["runs"][0]
        assert status["finished"] and status["state"] == "succeeded"
        print(
            f"planned {chosen['count']} x RTX4090, {chosen['wall_s']:.1f} s, "
            f"${chosen['cost_usd']:.6f}; actual {done.elapsed_s:.1f} s, ${actual:.6f}; "
            f"taken over: {taken[0].reason}"
        )
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for svc in reversed(services):
            await svc.stop()
        for watch in (steps, jobs, units):
            await watch.stop()


async def test_a_run_whose_gateway_died_before_asking_for_its_gpus_is_provisioned_and_finished(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """A gateway writes a run's record, then its lease, and dies before it sends the
    provision request: all it leaves is the record and a lease that lapses. The gateway
    that takes the run over asks for the GPUs itself (once: the cost-guard judges the
    id one time) and finishes the run, instead of waiting for a verdict that cannot come."""
    services = fleet(nats_url, tmp_path, POOLS)
    verdicts = await Watch(Verdict).start(nc, "fleet.budget.*")
    steps = await Watch(BatchStatus).start(nc, subjects.batch("orphan"))
    for svc in services:
        await svc.start()
    try:
        plan = await api(
            nc,
            "batch.plan",
            {
                "items": 40,
                "per_item_s": 0.5,
                "gpu_models": ["RTX4090"],
                "deadline_s": 30,
                "max_gpus": 2,
                "lead_time_s": 1,
            },
        )
        chosen = BatchOption(**plan["chosen"])
        call = RunBatchCall(id="orphan", items=40, per_item_s=0.5, option=chosen, jobs_per_gpu=2)
        # What the dead gateway left: its lease on the run, never renewed, and the record.
        book = await BatchBook.open(nc.jetstream(), "gateway-that-died")
        assert await book.driver("orphan").try_acquire()
        now = time.time()
        record = BatchRecord(
            id="orphan",
            call=call,
            option=chosen,
            pool=plan["pool"],
            provision_id="prov-orphan",
            opened_ts=now,
            started_ts=now,
        )
        assert await book.create(record) is not None

        seen = await steps.until(lambda s: any(x.finished for x in s), 90)
        done = seen[-1]
        assert done.state == "succeeded", [(s.state, s.reason) for s in seen]
        assert (done.items_done, done.items_failed) == (40, 0), done
        assert any(s.reason.startswith("taken over by gateway") for s in seen), seen
        judged = [v for v in verdicts.items if v.id == "prov-orphan"]
        assert [v.decision for v in judged] == ["approved"], judged
    finally:
        for svc in reversed(services):
            await svc.stop()
        for watch in (steps, verdicts):
            await watch.stop()
