"""`fleet replay` says when it changed the data (skipped seconds, a --max cap, epoch
milliseconds), and a window with nothing to score still writes its JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.cli import main


def _write(path: Path, counts: list[int]) -> Path:
    path.write_text("\n".join(str(c) for c in counts) + "\n")
    return path


def test_an_all_zero_window_writes_the_json_and_a_plot_and_says_nothing_was_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path / "zeros.txt", [0] * 1200)
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    args = ["replay", str(trace), "--sweep", "--json", str(out), "--plot", str(png)]
    assert main(args) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out.read_text())
    assert all(p["totals"]["seconds"] == 0 for p in doc["policies"].values())
    err = capsys.readouterr().err
    assert "nothing left to score: all 1,200 s lie in zero runs of >= 600 s" in err
    assert doc["meta"]["notes"] and "nothing left to score" in doc["meta"]["notes"][0]


def test_a_window_inside_a_gap_still_plots(tmp_path: Path) -> None:
    trace = _write(tmp_path / "gap.txt", [5] * 300 + [0] * 900 + [5] * 300)
    png = tmp_path / "gap.png"
    args = ["replay", str(trace), "--start", "400", "--duration", "600", "--plot", str(png)]
    assert main(args) == 0 and png.stat().st_size > 0


def test_skipped_seconds_are_counted_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path / "mix.txt", [5] * 300 + [0] * 700 + [5] * 300)
    assert main(["replay", str(trace), "--policy", "kpa"]) == 0
    assert "700 of 1,300 s in zero runs of >= 600 s treated as missing telemetry" in (
        capsys.readouterr().err
    )
    assert main(["replay", str(trace), "--policy", "kpa", "--skip-zero-runs", "0"]) == 0
    assert "zero runs" not in capsys.readouterr().err


def test_demand_above_the_max_is_said_with_how_often(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 400 in flight needs 400 / (8 x 0.7) = 72 units; --max 10 caps every policy.
    trace = _write(tmp_path / "big.txt", [5] * 300 + [400] * 300)
    assert main(["replay", str(trace), "--max", "10"]) == 0
    err = capsys.readouterr().err
    assert "demand needs more than --max 10 units" in err and "in 300 of 600 scored s" in err
    assert main(["replay", str(trace), "--max", "100"]) == 0
    assert "--max" not in capsys.readouterr().err


def test_without_a_max_the_replay_allows_what_the_peak_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10,000 in flight: 1,786 units at the baselines' 0.7, 3,125 at the sweep's 0.4.
    trace = _write(tmp_path / "huge.txt", [50] * 600 + [10_000] * 600)
    out = tmp_path / "out.json"
    assert main(["replay", str(trace), "--policy", "hpa", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "--max not given: 3,125 units, enough for the peak of 10,000 in flight" in err
    assert "demand needs more than --max" not in err
    sized = json.loads(out.read_text())["policies"]["hpa"]["series"]["ready"]
    assert max(sized) == 1786  # served once its units are ready
    assert main(["replay", str(trace), "--policy", "hpa", "--json", str(out), "--max", "1000"]) == 0
    assert "demand needs more than --max 1,000 units" in capsys.readouterr().err
    assert max(json.loads(out.read_text())["policies"]["hpa"]["series"]["ready"]) == 1000


def test_epoch_milliseconds_are_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "ms.csv"
    trace.write_text("1700000000000,5\n1700000001000,5\n1700000002000,5\n")
    assert main(["replay", str(trace), "--policy", "ours"]) == 0
    assert "look like epoch milliseconds" in capsys.readouterr().err
    assert main(["replay", str(trace), "--policy", "ours", "--period-s", "0.001"]) == 0
    assert "milliseconds" not in capsys.readouterr().err


def test_negative_skip_zero_runs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write(tmp_path / "w.txt", [5] * 100)
    assert main(["replay", str(trace), "--skip-zero-runs", "-5"]) == 2
    assert "--skip-zero-runs -5: give seconds >= 0" in capsys.readouterr().err
