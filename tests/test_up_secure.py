"""`fleet up --secure` as a user runs it: identities written 0600, every service ready
under its own, and the CLI in that directory working as the operator, which may see the
fleet but not publish what only a service may."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.attacks.secure_fleet import SERVICES, running_secure_fleet
from tests.test_cli_up import env_for

FLEET = [sys.executable, "-m", "tools"]


def test_up_secure_runs_every_service_as_its_own_identity(tmp_path: Path) -> None:
    with running_secure_fleet(tmp_path) as fleet:
        creds = tmp_path / ".fleet" / "creds"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o700
        for name in (*SERVICES, "runner", "operator", "admin", "acme", "globex"):
            assert stat.S_IMODE((creds / f"{name}.nk").stat().st_mode) == 0o600, name
        assert "nkey: U" in (tmp_path / ".fleet" / "nats" / "nats.conf").read_text()

        status = subprocess.run(
            [*FLEET, "status", "--json"],
            cwd=tmp_path,
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        seen = {s["name"] for s in json.loads(status.stdout)["services"]}
        assert set(SERVICES) <= seen

        async def operator_may_not_approve() -> list[str]:
            errors: list[str] = []
            nc = await fleet.connect("operator", errors)
            await nc.publish("fleet.budget.approved", b"{}")
            await nc.flush()
            await nc.flush()
            await fleet.close()
            return errors

        errors = asyncio.run(operator_may_not_approve())
        assert any("permissions violation for publish" in e for e in errors), errors
