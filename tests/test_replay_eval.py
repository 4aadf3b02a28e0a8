"""`fleet replay --eval`: one table for a set of traces, and leave-one-out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.cli import main
from tools.replay.evaluate import choose, collect, parse_set
from tools.replay.frontier import Headline, Point, Reading


def head(under: float | None, actions: float = 1.0) -> Headline:
    base = Point(knob=0.7, unit_hours=10.0, under_unit_s=100.0, actions=10)
    ours = None if under is None else Reading(unit_hours=10.0, under_unit_s=under, actions=actions)
    return Headline(baseline="hpa", base=base, ours=ours, lo=5.0, hi=20.0)


def test_leave_one_out_chooses_on_the_other_traces_only() -> None:
    per_trace = {
        # "a" is great for value 1 only on trace x; value 2 meets the goal elsewhere.
        "x": {"1": head(10.0), "2": head(90.0)},
        "y": {"1": head(80.0), "2": head(50.0)},
        "z": {"1": head(70.0), "2": head(40.0)},
    }
    assert choose(per_trace, "x", ["1", "2"]) == "2"  # met on y and z
    # Held out y: on x and z, value 1 meets once (x), value 2 once (z); the mean
    # ratio breaks the tie: (0.1 + 0.7) / 2 < (0.9 + 0.4) / 2.
    assert choose(per_trace, "y", ["1", "2"]) == "1"


def test_leave_one_out_caps_hopeless_ratios_and_counts_out_of_range_as_missed() -> None:
    per_trace = {
        "x": {"1": head(None), "2": head(70.0)},
        "y": {"1": head(10.0), "2": head(70.0)},
        "h": {"1": head(1.0), "2": head(1.0)},
    }
    assert choose(per_trace, "h", ["1", "2"]) == "1"  # met once vs never


def test_parse_set() -> None:
    assert parse_set("target_utilization=0.5,0.6") == ("target_utilization", [0.5, 0.6])
    assert parse_set("max_step_down=2,4") == ("max_step_down", [2, 4])
    with pytest.raises(ValueError, match="policy field"):
        parse_set("nonsense=1,2")
    with pytest.raises(ValueError, match="policy field"):
        parse_set("target_utilization")
    with pytest.raises(ValueError, match="not a valid value"):
        parse_set("max_step_down=two")


def small_set(tmp: Path) -> Path:
    d = tmp / "set"
    d.mkdir()
    (d / "steps.txt").write_text("\n".join(["5"] * 300 + ["40"] * 300 + ["10"] * 300) + "\n")
    rows = ["when,run_s"] + [f"{1000 + i * 0.5},{3 + (i % 7)}" for i in range(1200)]
    (d / "jobs.csv").write_text("\n".join(rows) + "\n")
    (d / "notes.md").write_text("not a trace\n")
    (d / "eval.json").write_text(
        json.dumps({"jobs.csv": {"time_column": "when", "duration_column": "run_s"}})
    )
    return d


def test_collect_reads_the_manifest(tmp_path: Path) -> None:
    got = collect([small_set(tmp_path)])
    assert [t.path.name for t in got] == ["jobs.csv", "steps.txt"]
    assert got[0].options == {"time_column": "when", "duration_column": "run_s"}


def test_the_manifest_names_end_and_token_columns(tmp_path: Path) -> None:
    (tmp_path / "pods.csv").write_text("created,deleted\n1,5\n2,\n")
    (tmp_path / "llm.jsonl").write_text('{"ts": 1000, "in": 5000, "out": 50}\n')
    (tmp_path / "eval.json").write_text(
        json.dumps(
            {
                "pods.csv": {"time_column": "created", "end_column": "deleted"},
                "llm.jsonl": {"time_column": "ts", "token_columns": "in,out", "period_s": 0.001},
            }
        )
    )
    got = {t.path.name: t for t in collect([tmp_path])}
    assert got["pods.csv"].options == {"time_column": "created", "end_column": "deleted"}
    assert got["llm.jsonl"].options == {
        "time_column": "ts",
        "token_columns": "in,out",
        "period_s": 0.001,
    }


def test_eval_prints_one_row_per_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = small_set(tmp_path)
    args = ["replay", "--eval", str(d), "--unit-capacity", "4", "--lead-time", "30"]
    assert main([*args, "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "jobs.csv" in out and "steps.txt" in out
    assert "of 2 traces" in out


def test_eval_window_cuts_every_trace_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = small_set(tmp_path)
    args = ["replay", "--eval", str(d), "--unit-capacity", "4", "--lead-time", "30"]
    assert main([*args, "--duration", "100", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "window: 0 s to 100 s of each trace" in out
    rows = [line for line in out.splitlines() if ".csv" in line or ".txt" in line]
    assert rows and all(" 100 " in line for line in rows)  # seconds scored


def test_eval_leave_one_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = small_set(tmp_path)
    args = ["replay", "--eval", str(d), "--unit-capacity", "4", "--lead-time", "30"]
    assert main([*args, "--set", "max_step_down=1,10", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-out" in out and "of 2 held-out traces" in out


def test_eval_sizes_the_max_to_each_trace_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "busy"
    d.mkdir()
    (d / "huge.txt").write_text("\n".join(["50"] * 300 + ["10000"] * 300) + "\n")
    (d / "small.txt").write_text("\n".join(["5"] * 600) + "\n")
    assert main(["replay", "--eval", str(d), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "huge.txt: --max not given: 3,125 units" in err
    assert "small.txt: --max" not in err
    assert main(["replay", "--eval", str(d), "--jobs", "1", "--max", "1000"]) == 0
    assert "huge.txt: demand needs more than --max 1,000 units" in capsys.readouterr().err


def test_eval_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--eval", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["replay", "--eval", str(small_set(tmp_path)), "--set", "bogus=1"]) == 2
    assert "policy field" in capsys.readouterr().err
    assert main(["replay", "x.txt", "--set", "max=1"]) == 2
    assert main(["replay"]) == 2


COMMITTED = Path(__file__).resolve().parent / "data" / "traces"
EVAL_SET = Path(os.environ.get("FLEET_EVAL_TRACES", "traces"))
"""The evaluation set built by `python -m tools.replay.fetch_traces traces` (docs/traces.md)."""


def test_committed_traces_read_as_their_manifest_says() -> None:
    from tools.replay.traces import read_trace

    traces = collect([COMMITTED])
    assert {t.path.name for t in traces} == {
        "azure_llm_code_2023-11-16.csv.gz",
        "azure_functions_2019_sample_per_minute.csv",
    }
    for et in traces:
        tr = read_trace(et.path, **et.options)
        assert sum(tr.arrivals) > 1000


@pytest.mark.slow
@pytest.mark.skipif(not (EVAL_SET / "eval.json").is_file(), reason="evaluation set absent")
def test_every_trace_of_the_evaluation_set_reads() -> None:
    from tools.replay.traces import read_trace

    traces = collect([EVAL_SET])
    assert len(traces) >= 6
    for et in traces:
        tr = read_trace(et.path, **et.options)
        assert len(tr.arrivals) > 3000 and sum(tr.arrivals) > 1000


def test_eval_says_each_traces_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a single replay notes on stderr (here, seconds left unscored as missing
    telemetry) the set's run says too, per trace."""
    d = tmp_path / "set"
    d.mkdir()
    (d / "gap.txt").write_text("\n".join(["4"] * 300 + ["0"] * 900 + ["4"] * 300) + "\n")
    args = ["replay", "--eval", str(d), "--unit-capacity", "4", "--lead-time", "30"]
    assert main([*args, "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    # One line each, whatever the width: a log is read with grep.
    assert (
        "fleet replay: note: gap.txt: 900 of 1,500 s in zero runs of >= 600 s treated as "
        "missing telemetry (--skip-zero-runs; 0: silence)\n"
    ) in err
