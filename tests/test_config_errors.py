"""A configuration error stops `fleet up` and `fleet run` at once, with one line and exit
code 2, and `fleet up`'s supervisor does not restart a service that exits with one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.natsserver import free_port

REPO = Path(__file__).resolve().parents[1]
FLEET = [sys.executable, "-m", "tools"]


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "ANTHROPIC_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def fleet(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEET, *args], cwd=cwd, env=env_for(**env), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("verb", [("up", "--port", "0"), ("run", "costguard")], ids=" ".join)
def test_a_misspelt_key_stops_the_command_with_one_line(tmp_path: Path, verb: tuple[str]) -> None:
    (tmp_path / "fleet.toml").write_text("[budget]\ndaly_usd = 5\n")
    out = fleet(tmp_path, *verb)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "budget.daly_usd" in out.stderr and "did you mean daily_usd?" in out.stderr
    assert "fleet.toml: unknown key" in out.stderr  # the file it is in
    assert not (tmp_path / ".fleet").exists()  # nothing was started or written


def test_a_misspelt_variable_is_named(tmp_path: Path) -> None:
    out = fleet(tmp_path, "run", "costguard", FLEET_BUDGET__DALY_USD="5")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "fleet run costguard: environment variable FLEET_BUDGET__DALY_USD: unknown key "
        "budget.daly_usd; did you mean daily_usd (FLEET_BUDGET__DAILY_USD)?"
    )


def test_up_stops_everything_when_a_service_exits_with_a_configuration_error(
    tmp_path: Path,
) -> None:
    # Valid as settings, refused by the provisioner when it builds its providers.
    (tmp_path / "fleet.toml").write_text('[pools.gpu]\nproviders = ["nosuch"]\n')
    out = fleet(tmp_path, "up", "--port", str(free_port()))
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr
    assert out.stderr.strip() == (
        "fleet up: provisioner cannot start: fleet run provisioner: unknown provider "
        "'nosuch'; known providers: hypercore, ionet, lambda, local, runpod, sim, vastai"
    )
    assert "restart #" not in out.stdout
    assert "no process left behind" in out.stdout
