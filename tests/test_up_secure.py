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
from pathlib import Path
from typing import Any

from tests.attacks.secure_fleet import SERVICES, running_secure_fleet
from tests.test_cli_up import env_for

FLEET = [sys.executable, "-m", "tools"]
LOCAL_POOL = """
[pools.cpu]
gpu_model = "CPU"
providers = ["local"]
min = 1
max = 1
"""


def fleet_cli(cwd: Path, *args: str) -> Any:
    """`fleet ARGS` in `cwd` (as its operator); its JSON output, after a 0 exit."""
    done = subprocess.run(
        [*FLEET, *args], cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_up_secure_runs_every_service_as_its_own_identity(tmp_path: Path) -> None:
    with running_secure_fleet(tmp_path, LOCAL_POOL) as fleet:
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
