"""Trace files that used to be misread: which shape a header says, Excel's byte-order
mark, malformed per-interval rows, a tar of several files, and epoch milliseconds."""

from __future__ import annotations

import io
import math
import tarfile
from pathlib import Path

import pytest

from tools.replay.traces import TraceError, read_trace


def test_a_count_column_makes_a_per_interval_file_whatever_the_period_is_called(
    tmp_path: Path,
) -> None:
    p = tmp_path / "counts.csv"
    p.write_text("timestamp,count\n1700000000,600\n1700000060,60\n")
    tr = read_trace(p)
    assert tr.shape == "per-interval" and tr.interval_s == 60
    assert math.isclose(sum(tr.arrivals), 660.0, rel_tol=1e-6)
    p.write_text("count,minute\n60,0\n120,1\n")  # the count first: the other is the period
    tr = read_trace(p, period_s=60)
    assert tr.arrivals[0] == 1.0 and tr.arrivals[60] == 2.0


def test_a_request_csv_without_a_timestamp_column_names_the_flag_and_the_columns(
    tmp_path: Path,
) -> None:
    p = tmp_path / "reqs.csv"
    p.write_text("id,time,tokens\n1,2024-01-01 00:00:00.023426,5\n")
    with pytest.raises(TraceError) as err:
        read_trace(p)
    message = str(err.value)
    assert "no `timestamp` column" in message and "--time-column NAME" in message
    assert "id, time, tokens" in message
    p.write_text("time,latency\n2024-01-01 00:00:00.023426,5\n")  # two columns, no count
    with pytest.raises(TraceError, match="--time-column NAME"):
        read_trace(p)


@pytest.mark.parametrize(
    ("body", "shape", "total"),
    [
        ("timestamp,x\n1700000000.5,1\n1700000001,2\n", "requests", 2.0),
        ("period,count\n0,5\n60,7\n", "per-interval", 12.0),
    ],
)
def test_a_byte_order_mark_does_not_hide_the_header(
    tmp_path: Path, body: str, shape: str, total: float
) -> None:
    p = tmp_path / "excel.csv"
    p.write_bytes(body.encode("utf-8-sig"))
    tr = read_trace(p)
    assert tr.shape == shape and math.isclose(sum(tr.arrivals), total, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0,1\n60,1\n120,1\n60,1\n", "line 4: period '60' is not after line 3's"),
        ("period,count\n0,1\n60,1\n60,1\n", "line 4: period '60' is not after line 3's"),
        ("0,1\n60,1\n120,1,7\n", "line 3: expected `period,count`, got '120,1,7'"),
        ("date,hour,count\n1,1,1\n", "line 1: a per-interval CSV has two columns"),
    ],
)
def test_malformed_per_interval_rows_name_their_line(
    tmp_path: Path, body: str, message: str
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(TraceError) as err:
        read_trace(p)
    assert message in str(err.value)


def test_a_tar_of_two_files_is_refused_naming_them(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in (("monday.txt", b"1 2 3\n"), ("tuesday.txt", b"4 5\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    p = tmp_path / "week.tgz"
    p.write_bytes(buf.getvalue())
    with pytest.raises(TraceError) as err:
        read_trace(p)
    assert "holds 2 files (monday.txt, tuesday.txt)" in str(err.value)
    assert "a tar of one file" in str(err.value)


def test_epoch_milliseconds_are_noticed_and_period_s_reads_them(tmp_path: Path) -> None:
    p = tmp_path / "ms.csv"
    p.write_text("1700000000000,5\n1700000001000,5\n")
    assert any("--period-s 0.001" in n for n in read_trace(p).notes)
    tr = read_trace(p, period_s=0.001)
    assert tr.notes == [] and tr.interval_s == 1 and list(tr.arrivals) == [5.0, 5.0]
    p.write_text("timestamp\n1700000000000\n1700000000500\n1700000002000\n")
    assert any("--period-s 0.001" in n for n in read_trace(p).notes)
    tr = read_trace(p, period_s=0.001)
    assert tr.notes == [] and list(tr.arrivals) == [2.0, 0.0, 1.0]
