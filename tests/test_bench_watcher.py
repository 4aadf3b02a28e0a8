"""`fleet bench watcher` runs end to end on a small load and reports both consumers."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_watcher_reports_the_watcher_next_to_the_raw_baseline() -> None:
    small = ["--events", "20000", "--units", "1000", "--pools", "10"]
    out = subprocess.run(
        [sys.executable, "-m", "tools", "bench", "watcher", "--json", *small],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode in (0, 1), out.stderr  # 1: a speed goal missed on a busy machine
    assert out.stderr == "", "with --json, progress stays quiet"
    result = json.loads(out.stdout)
    assert result["watcher"]["received"] == 20000
    assert result["raw"]["received"] == 20000
    assert result["watcher_dead_letters"] == 0
    assert result["ratio"] > 0
    assert result["decide"]["pools"] == 10
    assert set(result["goals"]) == {"watcher_events_s", "ratio_to_raw", "decide_ms_per_tick"}
