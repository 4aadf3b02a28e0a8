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
    (tmp_path / "fleet.toml").write_text('[sim]\nunits = "bogus"\n')
    out = fleet(tmp_path, "up", "--port", str(free_port()))
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr
    assert out.stderr.strip() == (
        "fleet up: provisioner cannot start: fleet run provisioner: [sim] units: expected "
        '"process" or "inline", got \'bogus\''
    )
    assert "restart #" not in out.stdout
    assert "no process left behind" in out.stdout


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[providers.vastai]\ntimeout = 5\n", "providers.vastai.timeout; did you mean timeout_s?"),
        ("[sim]\nfailur_rate = 0.5\n", "sim.failur_rate; did you mean failure_rate?"),
        ("[sim.load.gpu]\npeek = 30\n", "sim.load.gpu.peek; did you mean peak?"),
        ('[providers.vastai]\ntimeout_s = "slow"\n', "[providers.vastai] Expected `float`"),
        # Another service's table: the whole file is checked, whichever service starts.
        ("[watcher]\ntick = 1\n", "watcher.tick; did you mean tick_s?"),
        # A provider no pool could ever rent from, by name or by kind.
        (
            '[pools.gpu]\nproviders = ["vastia"]\n',
            "pools.gpu.providers: unknown provider 'vastia'; did you mean vastai? known "
            "providers: hypercore, ionet, lambda, local, runpod, sim, vastai, or a "
            "[providers.vastia] table whose kind is one of them",
        ),
        ('[providers.cheap]\nkind = "vast"\n', "providers.cheap.kind: unknown provider 'vast'"),
        (
            '[provisioner]\ndefault_providers = ["nosuch"]\n',
            "provisioner.default_providers: unknown provider 'nosuch'",
        ),
    ],
    ids=[
        "provider key",
        "sim key",
        "load key",
        "provider value",
        "other service",
        "pool's provider",
        "provider kind",
        "default provider",
    ],
)
def test_every_table_is_checked_before_a_service_starts(
    tmp_path: Path, toml: str, said: str
) -> None:
    (tmp_path / "fleet.toml").write_text(toml)
    out = fleet(tmp_path, "run", "scaler")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and said in out.stderr, out.stderr


def test_intervals_and_counts_that_would_spin_or_never_try_are_refused(tmp_path: Path) -> None:
    out = fleet(tmp_path, "run", "provisioner", FLEET_PROVISIONER__RECONCILE_INTERVAL_S="-5")
    assert out.returncode == 2
    assert "provisioner.reconcile_interval_s': Expected `float` > 0.0" in out.stderr
    assert "set by the environment variable FLEET_PROVISIONER__RECONCILE_INTERVAL_S" in out.stderr
    out = fleet(tmp_path, "run", "gateway", FLEET_BRAIN__MAX_STEPS="0")
    assert out.returncode == 2 and "brain.max_steps" in out.stderr


def test_a_variable_that_looks_like_a_number_still_sets_a_text_setting() -> None:
    from services.costguard.settings import CostguardSettings
    from services.kit.config import load_settings
    from services.runner.settings import RunnerSettings

    env = {
        "FLEET_POOLS__H100__GPU_MODEL": "4090",
        "FLEET_NATS__PASSWORD": "123456",
        "FLEET_BUDGET__DAILY_USD": "75",
    }
    settings = load_settings(CostguardSettings, env=env)
    assert settings.pools["h100"].gpu_model == "4090"
    assert settings.nats.password == "123456"
    assert settings.budget.daily_usd == 75.0
    runner = load_settings(RunnerSettings, env={"FLEET_RUNNER__AGENTS": '["a", "b"]'})
    assert runner.runner.agents == ["a", "b"]


def test_fleet_up_with_a_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    out = fleet(tmp_path, "up", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"fleet up: config file {tmp_path / 'nope.toml'} does not exist"
    assert not (tmp_path / ".fleet").exists()
