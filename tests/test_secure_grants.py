"""The secured deployment's identities and permissions, as data: who may publish a verdict,
write a lease, create a stream, call an agent as a tenant; and a config nats-server takes.
(The attack suite, tests/attacks/, runs the same grants against `fleet up --secure`.)"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import nkeys
import pytest

from contracts import subjects
from contracts.buckets import A2A_TASKS, ALL_BUCKETS
from contracts.durables import DURABLES
from contracts.streams import ALL_STREAMS
from services.kit.config import load_settings
from services.provisioner.providers.local import LocalSettings
from tools.configcheck import settings_type
from tools.natsserver import nats_server_binary
from tools.secure.grants import Deployment, Permissions, agent_buckets, grants
from tools.secure.identities import WORKER, ensure_identities, ensure_identity
from tools.secure.natsconf import render_auth
from tools.secure.setup import unit_env

DEPLOYMENT = Deployment(agents=("assistant",), tenants=("acme", "globex"))
GRANTS = grants(DEPLOYMENT)


def may_publish(perms: Permissions | None, subject: str) -> bool:
    """Whether `perms` lets its identity publish on `subject` (None: the admin, anything)."""
    return perms is None or any(subjects.covers(p, subject) for p in perms.publish)


def may_subscribe(perms: Permissions | None, subject: str) -> bool:
    return perms is None or any(subjects.covers(p, subject) for p in perms.subscribe)


def publishers(subject: str) -> set[str]:
    return {name for name, perms in GRANTS.items() if may_publish(perms, subject)}


def test_only_the_costguard_and_the_admin_may_publish_verdicts() -> None:
    for verdict in (subjects.BUDGET_APPROVED, subjects.BUDGET_DENIED, subjects.BUDGET_HELD):
        assert publishers(verdict) == {"costguard", "admin"}


def test_only_the_gateway_may_ask_the_admin_for_a_runtime_agents_resources() -> None:
    """What the admin's keeper does for the asker (buckets, runners' grants) is the
    gateway's to ask, after its quota check; a tenant or a runner asking would bypass it."""
    assert publishers(subjects.ADMIN_AGENTS) == {"gateway", "admin"}


def test_no_service_may_create_change_or_delete_a_stream() -> None:
    for name, perms in GRANTS.items():
        if perms is None:
            continue
        for spec in ALL_STREAMS:
            for op in ("CREATE", "UPDATE", "DELETE", "PURGE"):
                assert not may_publish(perms, f"$JS.API.STREAM.{op}.{spec.name}"), (name, op)
        assert not may_publish(perms, "$JS.API.STREAM.CREATE.EVIL"), name


def test_each_lease_key_is_writable_by_its_service_only() -> None:
    for service in ("costguard", "scaler", "provisioner", "brain"):
        assert publishers(f"$KV.fleet_leases.{service}") == {service, "admin"}


def test_each_durable_is_read_by_its_owner_only() -> None:
    for d in DURABLES:
        fetch = f"$JS.API.CONSUMER.MSG.NEXT.{d.stream}.{d.name}"
        assert publishers(fetch) == {d.owner, "admin"}, d.name
        assert publishers(f"$JS.ACK.{d.stream}.{d.name}.1.2.3.4.5") == {d.owner, "admin"}


def test_no_one_but_the_admin_may_delete_a_durable() -> None:
    for d in DURABLES:
        deleters = publishers(f"$JS.API.CONSUMER.DELETE.{d.stream}.{d.name}")
        assert deleters <= {"admin", "costguard"} and "admin" in deleters, d.name


def test_only_the_costguard_may_replace_its_own_durable() -> None:
    own = "$JS.API.CONSUMER.CREATE.FLEET_EVENTS.costguard-units.fleet.unit.>"
    assert publishers(own) == {"costguard", "admin"}
    assert publishers("$JS.API.CONSUMER.CREATE.FLEET_CMDS.x.fleet.budget.approved") == {"admin"}


def test_a_tenant_calls_only_as_itself_and_reads_only_its_own_inbox() -> None:
    acme = GRANTS["acme"]
    assert may_publish(acme, "a2a.fleet.rpc.acme")
    assert may_publish(acme, "a2a.agents.assistant.rpc.acme")
    assert not may_publish(acme, "a2a.fleet.rpc.globex")
    assert not may_publish(acme, "a2a.fleet.rpc")  # the bare subject takes a header
    assert not may_publish(acme, "fleet.api.provision")
    assert may_subscribe(acme, "_INBOX.acme.abc")
    assert not may_subscribe(acme, "_INBOX.globex.abc")
    assert not may_subscribe(acme, "a2a.fleet.tasks.t1")


def test_nobody_but_the_agents_reads_task_events() -> None:
    readers = {n for n, p in GRANTS.items() if may_subscribe(p, "a2a.fleet.tasks.t1")}
    assert readers == {"brain", "admin"}
    hosted = {n for n, p in GRANTS.items() if may_subscribe(p, "a2a.agents.assistant.tasks.t1")}
    assert hosted == {"runner", "admin"}
    creators = {n for n, p in GRANTS.items() if may_publish(p, "$JS.API.CONSUMER.CREATE.A2A_TASKS")}
    assert creators == {"admin"}


def test_identities_are_kept_0600_and_a_bad_tenant_is_refused(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    first = ensure_identities(creds, ["acme"])
    assert set(first) >= {"costguard", "operator", "admin", "acme", "runner"}
    for identity in first.values():
        assert stat.S_IMODE(identity.seed_file.stat().st_mode) == 0o600
        pair = nkeys.from_seed(bytearray(identity.seed_file.read_bytes().strip()))
        assert pair.public_key.decode() == identity.public_key
    again = ensure_identities(creds, ["acme"])
    assert {n: i.public_key for n, i in again.items()} == {
        n: i.public_key for n, i in first.items()
    }
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    for bad in ("a.b", "costguard", "x" * 65, ""):
        with pytest.raises(ValueError):
            ensure_identities(creds, [bad])
    (creds / "broken.nk").write_text("not a seed")
    with pytest.raises(ValueError, match=r"broken\.nk"):
        ensure_identity(creds, "broken")


def test_nats_server_accepts_the_generated_authorization(tmp_path: Path) -> None:
    identities = ensure_identities(tmp_path / "creds", list(DEPLOYMENT.tenants))
    conf = tmp_path / "nats.conf"
    conf.write_text(
        'listen: "127.0.0.1:-1"\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n' + render_auth(identities, GRANTS)
    )
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr + result.stdout
    text = conf.read_text()
    assert not re.search(r"\bSU[A-Z2-7]{40,}", text)  # public keys only, never a seed
    for identity in identities.values():
        assert identity.public_key in text


def test_a_local_gpu_worker_may_run_its_pools_jobs_and_nothing_that_rents_or_approves() -> None:
    worker = GRANTS[WORKER]
    assert may_publish(worker, subjects.job("j-1"))  # its jobs' events
    assert may_publish(worker, subjects.telemetry("gpu", "u-1"))
    assert may_subscribe(worker, subjects.unit("gpu", "u-1"))  # drain / end from the provisioner
    for queue in ALL_STREAMS:
        if queue.name.startswith("JOBS_") and queue.name != "JOBS_HELD":
            assert may_publish(worker, f"$JS.API.CONSUMER.MSG.NEXT.{queue.name}.units-gpu")
    for forbidden in (
        subjects.BUDGET_APPROVED,
        subjects.PROVISION_REQUESTED,
        subjects.unit("gpu", "u-1"),  # only the provisioner says what a unit is
        subjects.jobs("normal", "gpu"),  # submitting work is the gateway's
    ):
        assert not may_publish(worker, forbidden), forbidden


def test_fleet_up_secure_connects_local_gpu_workers_and_agent_runners_as_themselves(
    tmp_path: Path,
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('[providers.local]\nkind = "local"\nenv = { EXTRA = "kept" }\n')
    ids = ensure_identities(tmp_path / "creds", [])
    env = unit_env(str(config), ids["runner"], ids[WORKER])
    prov: Any = load_settings(settings_type("provisioner"), str(config), env=env)
    local = msgspec.convert(prov.providers["local"], LocalSettings)
    assert local.env["FLEET_NATS__NKEYS_SEED"] == str(ids[WORKER].seed_file.resolve())
    assert local.env["EXTRA"] == "kept"
    assert local.agent_env["FLEET_NATS__NKEYS_SEED"] == str(ids["runner"].seed_file.resolve())
    assert local.agent_env["FLEET_NATS__INBOX_PREFIX"] == "_INBOX.runner"


def test_no_identity_may_create_a_consumer_on_a_bucket_it_writes() -> None:
    """Keys are listed from subject counts (services.kit.buckets.bucket_keys): a writer
    needs no consumer, and one could deliver the bucket's entries anywhere (ADR 0013)."""
    buckets = [b.name for b in ALL_BUCKETS if not b.per_agent]
    buckets += [name for agent in DEPLOYMENT.agents for name in agent_buckets(agent)]
    buckets += [
        A2A_TASKS.for_agent(a).name for a in (subjects.BRAIN_AGENT, *subjects.ADVISOR_AGENTS)
    ]
    checked = 0
    for who, perms in GRANTS.items():
        if perms is None:
            continue
        for bucket in buckets:
            if may_publish(perms, f"$KV.{bucket}.key"):
                checked += 1
                assert not may_publish(perms, f"$JS.API.CONSUMER.CREATE.KV_{bucket}"), (who, bucket)
    assert checked >= 8  # the gateway's, brain's and runner's buckets were looked at
