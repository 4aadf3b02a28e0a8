"""The secured deployment on a real server: the authorization `fleet up --secure` and
`fleet init --identities` generate (tools/secure), with the streams, durables and buckets
`fleet init` creates. Every service runs as its own identity without a refused call, and
only the cost-guard's identity can publish a verdict that makes the provisioner spend.
(The attack suite, tests/attacks/, runs the whole `fleet up --secure`.)"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nkeys
import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.jobs import Job, JobEvent
from services.kit.binding import creates
from services.kit.config import load_settings
from services.kit.jobqueue import read_events
from tests.signing_helpers import PROVISIONER, signing
from tools.configcheck import settings_type
from tools.natsserver import free_port, nats_server_binary, stop_nats, wait_for_port
from tools.registry import load
from tools.secure.admin import Plan, init_server
from tools.secure.grants import Deployment, grants
from tools.secure.identities import WORKER, Identity, ensure_identities
from tools.secure.natsconf import render_auth
from tools.secure.setup import identity_env

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("watcher", "scaler", "costguard", "provisioner", "gateway", "brain", "runner")
POOLS = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "min": 0, "max": 4}}


class Secured:
    def __init__(self, url: str, identities: dict[str, Identity]) -> None:
        self.url = url
        self.identities = identities

    async def login(self, who: str, errors: list[str] | None = None) -> Client:
        """Connect as `who`; the server's refusals (permission violations) go to `errors`."""

        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.append(str(exc))

        return await nats.connect(
            self.url,
            nkeys_seed=str(self.identities[who].seed_file),
            inbox_prefix=self.identities[who].inbox_prefix,
            error_cb=on_error,
            allow_reconnect=False,
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A nats-server with the generated authorization, initialized as the admin."""
    where = tmp_path_factory.mktemp("secured")
    identities = ensure_identities(where / "creds", ["acme"])
    deployment = Deployment(agents=("assistant",), tenants=("acme",))
    port = free_port()
    (where / "server.conf").write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{where / "js"}" }}\n'
        + render_auth(identities, grants(deployment))
    )
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(where / "server.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 30, proc)
        url = f"nats://127.0.0.1:{port}"
        plan = Plan(pools=tuple(POOLS), agents=deployment.agents)
        asyncio.run(init_server(url, plan, identities["admin"].seed_file))
        yield Secured(url, identities)
    finally:
        stop_nats(proc)


def service_settings(secured: Secured, name: str, tmp_path: Path) -> Any:
    """`name`'s settings as `fleet up --secure` gives them: its identity, binding only."""
    env = identity_env(secured.identities[name])
    nats_section = {
        "nkeys_seed": env["FLEET_NATS__NKEYS_SEED"],
        "inbox_prefix": env["FLEET_NATS__INBOX_PREFIX"],
        "create_resources": False,
        "connect_deadline_s": 5,
    }
    overrides: dict[str, Any] = {
        "store": {"dir": str(tmp_path / name)},
        "stop_deadline_s": 1.0,
        "nats": nats_section,
        "pools": POOLS,
        "signing": signing(name),  # the services' own keys, as `fleet up` gives them
    }
    if name == "runner":
        overrides["runner"] = {"unit": "r-1", "pool": "agents-assistant"}
    return load_settings(settings_type(name), env={}, overrides=overrides)


async def test_every_service_runs_as_its_own_identity_without_a_refused_call(
    secured: Secured, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleet.bus")
    services = [
        load(name)(service_settings(secured, name, tmp_path), nats_url=secured.url)
        for name in SERVICES
    ]
    try:
        for svc in services:
            await svc.start()
            assert svc.state == "ready", svc.name
        operator = await secured.login("operator")
        try:  # the cost-guard answers its operation; the gateway asks the others for stats
            budget = await operator.request("fleet.api.budget", b"{}", timeout=10)
            assert b"daily_usd" in budget.data
            stats = await operator.request("fleet.api.stats", b"{}", timeout=20)
            assert b'"error"' not in stats.data, stats.data[:300]
        finally:
            await operator.close()
    finally:
        for svc in reversed(services):
            await svc.stop()
        creates(True)
    refused = [
        str(r.__dict__.get("error")) for r in caplog.records if "violation" in str(r.__dict__)
    ]
    assert refused == []


async def test_only_the_costguard_can_publish_an_approval(secured: Secured) -> None:
    operator = await secured.login("operator")
    seen = await operator.subscribe("fleet.budget.approved")
    try:
        for who in (*SERVICES, "operator", "acme"):
            errors: list[str] = []
            client = await secured.login(who, errors)
            try:
                await client.publish("fleet.budget.approved", who.encode())
                await client.flush()
                await client.flush()  # a refusal arrives before the second PONG
                if who != "costguard":
                    assert errors and "permissions violation" in errors[0].lower(), who
            finally:
                await client.close()
        got = await seen.next_msg(5)
        assert got.data == b"costguard"
        with pytest.raises(nats.errors.TimeoutError):
            await seen.next_msg(0.3)  # nobody else's got through
    finally:
        await operator.close()


async def test_a_key_the_server_does_not_know_is_refused(secured: Secured, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(secured.url, nkeys_seed=str(stranger), allow_reconnect=False)


def _worker(secured: Secured, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The worker process of unit w-1 of pool `gpu`, as the `worker` identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(identity_env(secured.identities[WORKER]))
    env["FLEET_SIGNING__PROVISIONER_KEY"] = PROVISIONER.public_key  # as `fleet up` gives it
    argv = [
        sys.executable, "-m", "services.provisioner.worker", "--pool", "gpu", "--unit", "w-1",
        "--nats", secured.url, "--ready-file", str(tmp_path / "unit.ready"),
    ]  # fmt: skip
    with open(tmp_path / "worker.log", "wb") as log:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_a_local_gpu_worker_runs_its_pools_jobs_as_the_worker_identity(
    secured: Secured, tmp_path: Path
) -> None:
    """The `local` provider's worker process, with the settings `fleet up --secure` gives
    it (tools.secure.setup.unit_env), connects as `worker`, takes a job of its pool from
    the durable `fleet init` made, runs it and reports it; the server refuses nothing."""
    admin = await secured.login("admin")
    events = await admin.subscribe(subjects.job("secure-job-1"))
    proc = _worker(secured, tmp_path)
    try:
        job = Job(id="secure-job-1", pool="gpu", command=[sys.executable, "-c", "print(42)"])
        await admin.jetstream().publish(subjects.jobs("normal", "gpu"), msgspec.json.encode(job))
        states: list[str] = []
        while "succeeded" not in states:
            msg = await events.next_msg(timeout=30)
            states.append(msgspec.json.decode(msg.data, type=JobEvent).state)
        assert states[0] == "started", states
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # a worker that never connected: leave none behind
            proc.kill()
            proc.wait(5)
        await admin.close()
    log_text = (tmp_path / "worker.log").read_text()
    assert "violation" not in log_text.lower(), log_text[-2000:]


@pytest.mark.parametrize("who", ["gateway", WORKER])
async def test_a_jobs_events_are_read_back_under_the_identities_that_read_them(
    secured: Secured, who: str
) -> None:
    """`fleet jobs get/list/cancel` (the gateway) and a redelivered job's worker read a
    job's stored events; under the secured grants, without a refused call."""
    job_id = f"read-back-{who}"
    admin = await secured.login("admin")
    errors: list[str] = []
    client = await secured.login(who, errors)
    try:
        event = JobEvent(job=job_id, state="queued", reason="waiting for a unit")
        await admin.jetstream().publish(subjects.job(job_id), msgspec.json.encode(event))
        read = await asyncio.wait_for(read_events(client.jetstream(), subjects.job(job_id)), 20)
        assert [(e.job, e.state) for e in read] == [(job_id, "queued")]
        await client.flush()
        assert errors == []
    finally:
        await client.close()
        await admin.close()
