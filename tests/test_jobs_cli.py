"""`fleet jobs` as a user runs it: submit and wait with a progress bar (or --json), get,
list, cancel, tail; refused work and unknown jobs are clear errors with exit code 1."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from nats.aio.client import Client

from services.kit.jobexec import simulated
from services.kit.jobworker import JobWorker
from tests.jobs_helpers import gateway

REPO = Path(__file__).resolve().parents[1]
POOLS = {"l4": {"gpu_model": "L4", "vram_gb": 24, "vendor": "NVIDIA", "max_usd_per_hour": 0.4}}


async def fleet(nats_url: str, *args: str) -> tuple[int, str, str]:
    """Run `fleet ARGS --nats URL` without blocking the loop the services run on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools", *args, "--nats", nats_url,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_fleet_jobs_submit_wait_get_list_cancel_and_tail(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    gw = gateway(tmp_path, nats_url, POOLS)
    await gw.start()
    unit = JobWorker(nc, "l4", "u1", simulated(20.0), slots=4)
    await unit.start()
    try:
        code, out, err = await fleet(
            nats_url, "jobs", "submit", "--count", "3", "--est-s", "0.5", "--wait", "--json"
        )
        assert code == 0, err
        doc = json.loads(out)
        ids = [j["id"] for j in doc["jobs"]]
        assert len(ids) == 3 and all(j["pool"] == "l4" for j in doc["jobs"])
        assert doc["outcomes"] == {i: "succeeded" for i in ids}

        code, out, err = await fleet(nats_url, "jobs", "submit", "--est-s", "0.2", "--wait")
        assert code == 0, err
        assert "ROUTED l4: cheapest pool that fits" in out and "1/1" in out

        code, out, _ = await fleet(nats_url, "jobs", "get", ids[0], "--json")
        view = json.loads(out)
        assert code == 0 and view["state"] == "succeeded" and view["job"]["id"] == ids[0]
        assert [e["state"] for e in view["events"]] == ["routed", "started", "succeeded"]

        code, out, _ = await fleet(nats_url, "jobs", "list", "--state", "succeeded", "--json")
        assert code == 0 and json.loads(out)["count"] == 4
        code, out, _ = await fleet(nats_url, "jobs", "list", "--state", "succeeded")
        # The human table, to a pipe: whole ids, for copying into `jobs get`.
        assert code == 0 and all(i in out for i in ids), out

        code, out, err = await fleet(nats_url, "jobs", "submit", "--vram", "80")
        assert code == 1 and "REFUSED" in out and "24 GB < 80 GB VRAM" in out

        code, out, _ = await fleet(nats_url, "jobs", "cancel", ids[1])
        assert code == 1 and "not cancelled: the job already succeeded" in out
        code, _, err = await fleet(nats_url, "jobs", "get", "job-nope")
        assert code != 0 and "no job 'job-nope'" in err

        code, out, _ = await fleet(
            nats_url, "jobs", "tail", ids[0], "--since", "5m", "--count", "3"
        )
        lines = out.splitlines()
        assert code == 0 and len(lines) == 3 and all(ids[0] in x for x in lines)
        # The tail shows events in the order the stream stored them: `routed` is
        # stamped before the job is queued but may be stored after the unit's
        # `started` (jobdesk._enqueue), so only the set of the three is fixed.
        assert any("ROUTED l4" in x for x in lines) and "SUCCEEDED l4 on u1 attempt 1" in out
    finally:
        await unit.stop()
        await gw.stop()


async def test_a_job_too_large_to_travel_is_refused_with_the_limit_and_nothing_is_queued(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    gw = gateway(tmp_path, nats_url, POOLS)
    await gw.start()
    try:
        body = {"id": "job-big", "est_s": 1, "data": {"blob": "x" * 300_000}}
        reply = await nc.request("fleet.api.jobs.submit", json.dumps(body).encode(), timeout=10)
        error = json.loads(reply.data)["error"]
        assert error["code"] == 413
        assert "262,144" in error["message"] and "object storage" in error["message"]
        listed = await nc.request("fleet.api.jobs.list", b"{}", timeout=10)
        assert json.loads(listed.data)["count"] == 0
    finally:
        await gw.stop()
