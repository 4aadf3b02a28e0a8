"""`fleet up --secure` as a user runs it: identities written 0600, every service ready
under its own, the CLI in that directory working as the operator, which may see the
fleet but not publish what only a service may, and a pool on the `local` provider
running a job on a GPU worker process under the `worker` identity."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attacks.secure_fleet import SERVICES, SecureFleet, running_secure_fleet
from tests.test_cli_up import env_for

FLEET = [sys.executable, "-m", "tools"]
LOCAL_POOL = """
[pools.cpu]
gpu_model = "CPU"
providers = ["local"]
min = 1
max = 1
"""


def as_operator(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fleet ARGS` in `cwd`, where the CLI connects as the fleet's operator."""
    return subprocess.run(
        [*FLEET, *args], cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=120
    )


def fleet_cli(cwd: Path, *args: str) -> Any:
    """`fleet ARGS` in `cwd` (as its operator); its JSON output, after a 0 exit."""
    done = as_operator(cwd, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    with running_secure_fleet(tmp_path_factory.mktemp("secure"), LOCAL_POOL) as running:
        yield running


def test_up_secure_runs_every_service_as_its_own_identity(fleet: SecureFleet) -> None:
    tmp_path = fleet.cwd
    creds = tmp_path / ".fleet" / "creds"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    for name in (*SERVICES, "runner", "worker", "operator", "admin", "acme", "globex"):
        assert stat.S_IMODE((creds / f"{name}.nk").stat().st_mode) == 0o600, name
    assert "nkey: U" in (tmp_path / ".fleet" / "nats" / "nats.conf").read_text()

    status = fleet_cli(tmp_path, "status", "--json")
    seen = {s["name"] for s in status["services"]}
    assert set(SERVICES) <= seen

    async def operator_may_not_approve() -> list[str]:
        errors: list[str] = []
        nc = await fleet.connect("operator", errors)
        await nc.publish("fleet.budget.approved", b"{}")
        await nc.flush()
        await nc.flush()
        await fleet.close()
        return errors

    submit = ("jobs", "submit", "--pool", "cpu", "--wait", "--json", "--")
    job = fleet_cli(tmp_path, *submit, sys.executable, "-c", "print(42)")
    assert list(job["outcomes"].values()) == ["succeeded"], job

    errors = asyncio.run(operator_may_not_approve())
    assert any("permissions violation for publish" in e for e in errors), errors


def test_an_agent_created_at_runtime_is_served_under_grants_the_admin_adds(
    fleet: SecureFleet,
) -> None:
    """`fleet agents create` under --secure: the admin (the `fleet up` process) makes the
    agent's buckets and grants the runners its subjects before the agent exists; its own
    runner, a `local` process as the `runner` identity, then answers it."""
    auth = fleet.creds / "auth.conf"
    assert "A2A_TASKS_agents_haiku" not in auth.read_text()
    made = fleet_cli(fleet.cwd, "agents", "create", "haiku", "--prompt", "Be brief.", "--json")
    assert made["runner"]["state"] == "ready", made
    assert "A2A_TASKS_agents_haiku" in auth.read_text()

    asked = as_operator(fleet.cwd, "ask", "--agent", "agents.haiku", "how is the fleet?")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert 'You said: "how is the fleet?"' in asked.stdout, asked.stdout

    runner_logs = list((fleet.cwd / ".fleet" / "local-local").glob("*.log"))
    assert runner_logs
    for log in runner_logs:
        text = log.read_text().lower()
        assert "violation" not in text and "does not exist" not in text, text[-2000:]


def test_the_operators_approvals_and_mcp_tools_reach_the_fleet_as_the_operator(
    fleet: SecureFleet,
) -> None:
    """`fleet approve`/`reject` and `fleet mcp` connect as the operator, like every verb:
    a secured server refuses a connection with no identity."""
    for verb in ("approve", "reject"):
        done = as_operator(fleet.cwd, verb, "prov-nosuch")
        # The cost-guard answered: the request is unknown (not a refused connection).
        assert done.returncode == 1, done.stdout + done.stderr
        assert "no held request 'prov-nosuch'" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    async def budget_over_mcp() -> Any:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "tools", "mcp"], cwd=str(fleet.cwd),
            env=env_for(fleet.cwd),
        )  # fmt: skip
        async with Client(params) as client:
            return await client.call_tool("get_budget", {})

    budget = asyncio.run(budget_over_mcp())
    assert not budget.is_error, budget.content
    assert "daily_usd" in budget.content[0].text
