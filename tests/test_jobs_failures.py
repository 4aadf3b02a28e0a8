"""Jobs against failure: a poison job is dead-lettered after its attempts with every
reason while the rest finish; cancel stops a running job; a draining unit hands its
jobs back; a unit SIGKILLed mid-job loses nothing and no job finishes twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from contracts import subjects
from services.kit.jobexec import simulated
from services.kit.jobpull import delivery
from services.kit.jobworker import JobWorker
from tests.jobs_helpers import JobWatch, gateway, submit

REPO = Path(__file__).resolve().parents[1]
POOLS = {"l4": {"gpu_model": "L4", "vram_gb": 24, "vendor": "NVIDIA", "max_usd_per_hour": 0.4}}


async def test_poison_job_is_dead_lettered_after_its_attempts_and_the_rest_finish(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    gw = gateway(tmp_path, nats_url, POOLS)
    await gw.start()
    watch = await JobWatch(nc).start()
    units = [
        JobWorker(nc, "l4", f"u{i}", simulated(5.0), slots=4, retry_delay_s=0.05) for i in range(2)
    ]
    try:
        for u in units:
            await u.start()
        poison = await submit(nc, est_s=0.1, data={"fail": True, "error": "CUDA OOM"}, attempts=3)
        good = [await submit(nc, est_s=0.2) for _ in range(12)]
        assert poison.decision == "routed" and poison.pool == "l4"
        await watch.until(
            lambda: (
                "dead" in watch.states(poison.id)
                and all("succeeded" in watch.states(g.id) for g in good)
            ),
            30,
            "the poison job dead and the others succeeded",
        )
        dead = next(e for e in watch.events[poison.id] if e.state == "dead")
        assert len(dead.reasons) == 3, dead
        assert all("CUDA OOM" in r for r in dead.reasons)
        assert [r.split(":")[0] for r in dead.reasons] == ["attempt 1", "attempt 2", "attempt 3"]
        assert watch.states(poison.id).count("failed") == 3
        assert watch.states(poison.id).count("retried") == 2
        assert all(watch.states(g.id).count("succeeded") == 1 for g in good)

        # `fleet.api.jobs.get` tells the same story.
        got = await nc.request(
            subjects.api("jobs.get"), f'{{"id": "{poison.id}"}}'.encode(), timeout=5
        )
        assert b'"state":"dead"' in got.data and b"CUDA OOM" in got.data
    finally:
        for u in units:
            await u.stop()
        await watch.stop()
        await gw.stop()


async def test_cancel_stops_a_running_job_and_drain_hands_jobs_back(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    gw = gateway(tmp_path, nats_url, POOLS)
    await gw.start()
    watch = await JobWatch(nc).start()
    first = JobWorker(nc, "l4", "first", simulated(1.0), slots=2)
    second = JobWorker(nc, "l4", "second", simulated(100.0), slots=2)
    try:
        await first.start()
        long = await submit(nc, est_s=600)
        other = await submit(nc, est_s=300)
        await watch.until(
            lambda: "started" in watch.states(long.id) and "started" in watch.states(other.id),
            10,
            "both jobs started on the first unit",
        )
        reply = await nc.request(
            subjects.api("jobs.cancel"), f'{{"id": "{long.id}"}}'.encode(), timeout=5
        )
        assert b'"cancelled":true' in reply.data
        await watch.until(
            lambda: watch.states(long.id).count("cancelled") == 2, 5, "the unit to stop the job"
        )
        stopped = watch.events[long.id][-1]
        assert stopped.unit == "first" and stopped.reason.startswith("stopped on first")
        assert first.busy == 1 and "succeeded" not in watch.states(long.id)

        await second.start()
        await first.drain("is draining for scale-down")
        await watch.until(
            lambda: "succeeded" in watch.states(other.id), 10, "the handed-back job to finish"
        )
        events = watch.events[other.id]
        handed = next(e for e in events if e.state == "retried")
        assert "handed back" in handed.reason and handed.unit == "first"
        assert events[-1].unit == "second"
        again = await nc.request(
            subjects.api("jobs.cancel"), f'{{"id": "{other.id}"}}'.encode(), timeout=5
        )
        assert b'"cancelled":false' in again.data and b"succeeded" in again.data
    finally:
        await first.stop()
        await second.stop()
        await watch.stop()
        await gw.stop()


def _unit(nats_url: str, name: str, ready: Path) -> subprocess.Popen[bytes]:
    """A local unit: the real worker process the `local` provider starts."""
    args = [
        sys.executable, "-m", "services.provisioner.worker", "--pool", "cpu", "--unit", name,
        "--nats", nats_url, "--capacity", "3", "--ready-file", str(ready), "--job-ack-wait", "2",
    ]  # fmt: skip
    return subprocess.Popen(args, cwd=REPO, start_new_session=True)


async def test_unit_killed_mid_job_every_job_succeeds_exactly_once(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"cpu": {"gpu_model": "CPU", "vendor": "other", "runtime": "cpu"}}
    gw = gateway(tmp_path, nats_url, pools)
    await gw.start()
    watch = await JobWatch(nc).start()
    ready = [tmp_path / "a.ready", tmp_path / "b.ready"]
    beats = await nc.subscribe(subjects.telemetry("cpu", "victim"))
    victim = _unit(nats_url, "victim", ready[0])
    survivor: subprocess.Popen[bytes] | None = None
    try:
        await beats.next_msg(timeout=30)  # the unit is connected and pulling
        script = "import time, os; time.sleep(1.0); print('done', os.environ['FLEET_JOB_ID'])"
        jobs = [
            await submit(nc, pool="cpu", command=[sys.executable, "-c", script]) for _ in range(6)
        ]
        await watch.until(
            lambda: sum("started" in watch.states(j.id) for j in jobs) == 3,
            20,
            "the victim to start three jobs",
        )
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        survivor = _unit(nats_url, "survivor", ready[1])
        await watch.until(
            lambda: all("succeeded" in watch.states(j.id) for j in jobs),
            60,
            "every job to succeed",
        )
        redelivered = 0
        for j in jobs:
            events = watch.events[j.id]
            assert [e.state for e in events].count("succeeded") == 1, events
            done = next(e for e in events if e.state == "succeeded")
            assert done.exit_code == 0 and f"done {j.id}" in done.output
            if any(e.state == "retried" for e in events):
                redelivered += 1
                retried = next(e for e in events if e.state == "retried")
                assert "victim stopped answering" in retried.reason, retried
                assert done.unit == "survivor"
        assert redelivered == 3
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        await watch.stop()
        await gw.stop()


async def test_a_redelivery_is_counted_as_jetstream_counts_it(nc: Client) -> None:
    """`delivery` reads the count off the ack subject; it must agree with nats-py's full
    parse on a real first delivery and a real redelivery, and on the domain form."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="REDELIVER", subjects=["redeliver.>"]))
    psub = await js.pull_subscribe("redeliver.a", durable="d")
    await js.publish("redeliver.a", b"job")
    counts = []
    for _ in range(2):
        (msg,) = await psub.fetch(1, timeout=5)
        counts.append((delivery(msg), msg.metadata.num_delivered))
        await msg.nak()
    await psub.unsubscribe()
    assert counts == [(1, 1), (2, 2)]
    v2 = Msg(nc, reply="$JS.ACK.hub.ACCHASH.JOBS_NORMAL.units-l4.3.41.40.1700000000000000000.7.x")
    assert delivery(v2) == 3 == v2.metadata.num_delivered
