"""`fleet replay --config/--pool` and `--plot`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.test_replay import synthetic_trace
from tools.cli import main
from tools.replay.plot import worst_window
from tools.replay.sim import Series

TOML = """
[scaler.default_policy]   # pools without a table of their own: not this one, as in the scaler
lead_time_s = 999

[pools.gpu]
unit_capacity = 2
target_utilization = 0.55
max = 40
lead_time_s = 45
max_step_down = 3
gpu_model = "H100"    # another service's key: read, not the scaler's
"""


def _files(tmp_path: Path, config: str) -> tuple[Path, Path, Path]:
    """A synthetic trace, a fleet.toml holding `config`, and where the JSON goes."""
    trace, cfg = tmp_path / "syn.txt", tmp_path / "fleet.toml"
    synthetic_trace(trace)
    cfg.write_text(config)
    return trace, cfg, tmp_path / "o.json"


def test_config_replays_the_pools_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, cfg, out = _files(tmp_path, TOML)
    args = ["replay", str(trace), "--config", str(cfg), "--pool", "gpu", "--policy", "ours"]
    assert main([*args, "--max", "30", "--json", str(out)]) == 0
    policy = json.loads(out.read_text())["meta"]["policy"]
    assert policy["unit_capacity"] == 2 and policy["target_utilization"] == 0.55
    assert policy["lead_time_s"] == 45 and policy["max_step_down"] == 3
    assert policy["max"] == 30  # a flag given on the command line wins
    assert "unit capacity 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "pool", "message"),
    [
        ("[pools.gpu]\n", "cpu", "no [pools.cpu] table (pools: gpu), and no [scaler.default_"),
        ("[pools.gpu]\nmin = 5\nmax = 2\n", "gpu", "need 0 <= min <= max"),
        (
            "[pools.gpu]\nunit_capacity = 'many'\n",
            "gpu",
            "setting 'pools.gpu.unit_capacity': Expected `float`",
        ),
        (
            "[pools.gpu]\ntick_sec = 1\n",
            "gpu",
            "unknown key pools.gpu.tick_sec; did you mean tick_s?",
        ),
        ("[pools.gpu]\nunit_capacty = 2\n", "gpu", "did you mean unit_capacity?"),
        ("[pools.gpu\n", "gpu", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, pool: str, message: str
) -> None:
    trace, cfg = tmp_path / "syn.txt", tmp_path / "fleet.toml"
    synthetic_trace(trace)
    cfg.write_text(text)
    assert main(["replay", str(trace), "--config", str(cfg), "--pool", pool]) == 2
    assert message in capsys.readouterr().err
    assert main(["replay", str(trace), "--config", str(cfg)]) == 2


def test_a_pool_without_a_table_replays_the_default_policy_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, cfg, out = _files(tmp_path, TOML)
    args = ["replay", str(trace), "--config", str(cfg), "--pool", "cpu", "--policy", "ours"]
    assert main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["meta"]["policy"]["lead_time_s"] == 999
    assert "no [pools.cpu] table (pools: gpu): replaying [scaler.default_policy]" in (
        capsys.readouterr().err
    )


def test_environment_variables_are_laid_over_the_file_as_for_the_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trace, cfg, out = _files(tmp_path, TOML)
    monkeypatch.setenv("FLEET_POOLS__GPU__MAX", "12")
    args = ["replay", str(trace), "--config", str(cfg), "--pool", "gpu", "--policy", "ours"]
    assert main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["meta"]["policy"]["max"] == 12
    monkeypatch.setenv("FLEET_POOLS__GPU__MAXX", "12")
    assert main(args) == 2
    assert "environment variable FLEET_POOLS__GPU__MAXX" in capsys.readouterr().err


def test_cost_is_at_the_pools_price_unless_price_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, cfg, out = _files(tmp_path, TOML + "max_usd_per_hour = 3.5\n")
    args = ["replay", str(trace), "--config", str(cfg), "--pool", "gpu", "--policy", "ours"]
    assert main([*args, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    totals = doc["policies"]["ours"]["totals"]
    assert doc["meta"]["price_usd_per_hour"] == 3.5
    assert math.isclose(totals["cost_usd"], 3.5 * totals["unit_hours"], rel_tol=1e-9)
    assert "cost at the pool's max_usd_per_hour, 3.5 USD" in capsys.readouterr().err
    assert main([*args, "--price", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["meta"]["price_usd_per_hour"] == 2


def test_worst_window_finds_the_most_short_ten_minutes() -> None:
    n = 3000
    s = Series()
    s.demand.extend([8.0] * n)
    s.ready.extend([2] * n)
    for i in range(1500, 1700):
        s.ready[i] = 0  # short by 2 units here, 0 elsewhere
    s.t.extend(range(n))
    s.desired.extend([2] * n)
    at = worst_window(s, unit_capacity=4.0)
    assert at <= 1500 and at + 600 >= 1700


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, png = tmp_path / "syn.txt", tmp_path / "replay.png"
    synthetic_trace(trace)
    args = ["replay", str(trace), "--unit-capacity", "4", "--lead-time", "30", "--sweep"]
    assert main([*args, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*args[:2], "--plot", str(tmp_path / "no" / "such" / "dir.png")]) == 2
    assert "cannot write" in capsys.readouterr().err
