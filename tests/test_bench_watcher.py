"""`fleet bench watcher` runs end to end on a small load and reports both consumers.

The test checks the result's shape and that the exit code tells the truth about the
goals; whether this machine meets them is the benchmark's own verdict (`fleet bench`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

GOALS = {"watcher_events_s", "ratio_to_raw", "decide_ms_per_tick"}


def test_bench_watcher_reports_the_watcher_next_to_the_raw_baseline() -> None:
    small = ["--events", "20000", "--units", "1000", "--pools", "10"]
    out = subprocess.run(
        [sys.executable, "-m", "tools", "bench", "watcher", "--json", *small],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode != 2, f"the benchmark could not run: {out.stderr}"
    assert out.stderr == "", "with --json, progress stays quiet"
    result = json.loads(out.stdout)
    assert result["watcher"]["received"] == 20000
    assert result["raw"]["received"] == 20000
    assert result["watcher_dead_letters"] == 0
    assert result["watcher"]["events_s"] > 0 and result["raw"]["events_s"] > 0
    same_run = result["watcher"]["events_s"] / result["raw"]["events_s"]
    assert result["ratio"] == pytest.approx(same_run, rel=0.01)
    assert result["decide"]["pools"] == 10
    assert set(result["goals"]) == GOALS
    for name, goal in result["goals"].items():
        assert goal["goal"] > 0 and isinstance(goal["met"], bool), (name, goal)
    # a missed goal is never reported as success: exit 1 exactly when one is missed
    missed = sorted(n for n, g in result["goals"].items() if g["met"] is False)
    assert out.returncode == (1 if missed else 0), (out.returncode, missed)
