"""Trace readers: every shape, every wrapping, and a clear error for a bad row."""

from __future__ import annotations

import bz2
import gzip
import io
import math
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.replay.traces import TraceError, parse_timestamp, read_trace


def test_per_second_counts(tmp_path: Path) -> None:
    p = tmp_path / "w.txt"
    p.write_text("1 2 3\n4\n\n5 0\n")
    tr = read_trace(p)
    assert list(tr.arrivals) == [1, 2, 3, 4, 5, 0] and tr.shape == "per-second"


def test_per_interval_with_date_times_takes_the_step_from_the_rows(tmp_path: Path) -> None:
    p = tmp_path / "wc.csv"
    p.write_text(
        "period,count\n\n1998-04-30 21:30:00,2\n1998-04-30 21:31:00,120\n1998-04-30 21:33:00,6\n"
    )
    tr = read_trace(p)
    assert tr.shape == "per-interval" and tr.interval_s == 60
    assert len(tr.arrivals) == 4 * 60  # the missing 21:32 is a zero minute
    assert math.isclose(tr.arrivals[0], 2 / 60, rel_tol=1e-6)
    assert math.isclose(tr.arrivals[60], 2.0) and tr.arrivals[120] == 0.0
    assert math.isclose(sum(tr.arrivals), 128.0, rel_tol=1e-5)


def test_per_interval_with_numbers(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("0,60\n1,120\n3,6\n")
    by_minute = read_trace(p, period_s=60)
    assert len(by_minute.arrivals) == 240 and by_minute.interval_s == 60
    assert by_minute.arrivals[0] == 1.0 and by_minute.arrivals[60] == 2.0
    p.write_text("1000,5\n1010,10\n")  # epoch-like seconds, 10 s rows
    tr = read_trace(p)
    assert tr.interval_s == 10 and len(tr.arrivals) == 20 and tr.arrivals[10] == 1.0


def test_request_timestamps_with_tokens(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,5000,50\n"
        "2023-11-16 18:15:46.9000000,0,0\n"
        "2023-11-16 18:15:48.1000000,0,100\n"
    )
    tr = read_trace(p)
    assert tr.shape == "requests"
    assert list(tr.arrivals[:3]) == [2.0, 0.0, 1.0]
    assert tr.busy is not None
    # First request: 1 s prefill + 1 s decode = 2 s in flight; third: 2 s.
    assert math.isclose(sum(tr.busy), 4.0, rel_tol=1e-6)
    assert len(tr.busy) == len(tr.arrivals) == 5  # runs to the last request's end


def test_requests_with_any_header_and_durations(tmp_path: Path) -> None:
    p = tmp_path / "jobs.csv"
    p.write_text(  # out of time order; epoch seconds; durations make concurrency
        "job,submitted,exec_s\nb,1005.0,2\na,1000.5,3.5\nc,1005.5,0.5\n"
    )
    tr = read_trace(p, time_column="submitted", duration_column="exec_s")
    assert tr.shape == "requests" and tr.busy is not None
    assert list(tr.arrivals) == [1, 0, 0, 0, 0, 2, 0]
    assert math.isclose(sum(tr.busy), 6.0, rel_tol=1e-6)
    assert math.isclose(tr.busy[0], 0.5) and math.isclose(tr.busy[5], 1.5)
    # Without a duration column: arrivals only (a fixed service time later).
    assert read_trace(p, time_column="SUBMITTED").busy is None


def test_long_requests_are_in_flight_every_second_they_span(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    p.write_text("t,d\n0.5,10.25\n3,4000000\n")  # the second lasts 46 days
    tr = read_trace(p, time_column="t", duration_column="d")
    assert tr.busy is not None and len(tr.busy) == 4_000_003
    assert list(tr.busy[:4]) == [0.5, 1.0, 1.0, 2.0]
    assert list(tr.busy[9:12]) == [2.0, 1.75, 1.0]
    assert tr.busy[-1] == 1.0


def test_timestamp_parsing_keeps_all_fractional_digits() -> None:
    a = parse_timestamp("2023-11-16 18:15:46.6805900")
    b = parse_timestamp("2023-11-16 18:15:46")
    assert math.isclose(a - b, 0.68059, abs_tol=1e-6)
    assert parse_timestamp("2023-11-16T18:15:46Z") == b
    # UTC offsets, as Azure's 2024 LLM traces write their times.
    assert parse_timestamp("2023-11-16 18:15:46+00:00") == b
    assert math.isclose(
        parse_timestamp("2023-11-16 18:15:46.6805900+00:00") - b, 0.68059, abs_tol=1e-6
    )
    assert parse_timestamp("2023-11-16 20:15:46+02:00") == b
    assert parse_timestamp("2023-11-16T13:45:46.0-0430") == b
    assert parse_timestamp("2023-11-16 18:15:46 UTC") == b
    assert parse_timestamp("2023-11-16 18:15") == b - 46  # a time ending in :MM is no offset
    assert parse_timestamp("2023-11-16") == b - (18 * 3600 + 15 * 60 + 46)
    for bad in ("2023-11-16 18:15:46+0x:00", "2023-11-16 18:15:46+", "2023-11-16+02:00"):
        with pytest.raises(TraceError):
            parse_timestamp(bad)
    with pytest.raises(TraceError):
        parse_timestamp("yesterday")


def _tar(body: bytes, mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        folder = tarfile.TarInfo("data")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # a member that is not a file is skipped
        info = tarfile.TarInfo("workload.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


WRAPPINGS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "tar": lambda b: _tar(b, "w"),
    "tar.gz": lambda b: _tar(b, "w:gz"),
    "tar.bz2": lambda b: _tar(b, "w:bz2"),
}
SHAPES = {
    "per-second": (b"3 4 5\n6\n", 18.0),
    "per-interval": (b"period,count\n1998-04-30 21:30:00,60\n1998-04-30 21:31:00,0\n", 60.0),
    "requests": (b"timestamp,x\n1700000000.5,1\n1700000001,2\n", 2.0),
    "per-interval columns": (b"HashOwner,Trigger,1,2\na,http,1,2\nb,timer,,3\n", 6.0),
    "requests (JSON Lines)": (
        b'{"timestamp": 1700000000.5, "x": 1}\n\n{"timestamp": 1.7000000015e9}\n',
        2.0,
    ),
}


@pytest.mark.parametrize("wrap", WRAPPINGS)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_in_every_wrapping(tmp_path: Path, wrap: str, shape: str) -> None:
    body, total = SHAPES[shape]
    p = tmp_path / "trace.bin"  # the name says nothing: the content decides
    p.write_bytes(WRAPPINGS[wrap](body))
    tr = read_trace(p)
    assert tr.shape == shape
    assert math.isclose(sum(tr.arrivals), total, rel_tol=1e-6)


BAD_ROWS = {
    "per-second": (b"1 2\n3 x\n", "line 2: 'x' is not a number"),
    "per-second negative": (b"1\n\n-2\n", "line 3: count -2 must be"),
    "per-interval count": (b"period,count\n0,1\n60,two\n", "line 3: 'two' is not a number"),
    "per-interval period": (b"0,1\n60,1\nlater,1\n", "line 3: period 'later'"),
    "per-interval off grid": (b"0,1\n60,1\n90,1\n", "line 3: period at 90 s"),
    "per-interval order": (b"60,1\n0,1\n", "line 2: the interval, -60 s"),
    "requests time": (b"timestamp,n\n5,1\nsoon,1\n", "line 3: bad timestamp 'soon'"),
    "requests tokens": (
        b"TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,many\n",
        "line 2: ContextTokens 'many' is not a number of tokens",
    ),
    "requests empty tokens": (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,20,\n",
        "line 2: GeneratedTokens is empty",
    ),
    "requests short row": (b"a,timestamp\n1,5\n2\n", "line 3: too few columns"),
    "requests far time": (b"timestamp\n5\n99999999999\n", "line 3: time"),
    "columns count": (b"app,1,2\na,1,2\nb,1,x\n", "line 3: 'x' is not a number"),
    "columns negative": (b"app,1,2\na,-1,2\n", "line 2: count -1 must be"),
    "columns short row": (b"app,1,2\na,1,2\n\nb,1\n", "line 4: 2 columns, the header has 3"),
    "columns uneven": (b"app,1,2,4\na,1,2,3\n", "line 1: numbered column 4 is not 1 after"),
    "columns no rows": (b"app,1,2\n", "no rows under the header"),
    "json lines truncated": (b'{"timestamp": 5}\n{"timestamp": \n', "line 2: not a JSON object"),
    "json lines not an object": (b'{"timestamp": 5}\n\n[5]\n', "line 3: not a JSON object"),
    "pretty-printed json": (b'{\n  "timestamp": 5\n}\n', "line 1: not a JSON object"),
    "json lines time": (b'{"timestamp": 5}\n{"timestamp": "soon"}\n', "line 2: bad timestamp"),
    "json lines no time key": (b'{"t": 5}\n', "line 1: no key 'timestamp'"),
    "json lines missing time": (b'{"timestamp": 5}\n{"x": 1}\n', "line 2: bad timestamp ''"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
@pytest.mark.parametrize("wrap", ["plain", "tar.bz2"])
def test_a_bad_row_names_its_line(tmp_path: Path, case: str, wrap: str) -> None:
    body, message = BAD_ROWS[case]
    p = tmp_path / "bad.txt"
    p.write_bytes(WRAPPINGS[wrap](body))
    with pytest.raises(TraceError, match=r"bad\.txt") as err:
        read_trace(p)
    assert message in str(err.value)


BAD_COLUMNS: dict[str, tuple[str, dict[str, str], str]] = {
    "negative duration": ("t,d\n1,2\n2,-1\n", {"duration_column": "d"}, r"line 3: duration '-1'"),
    "empty duration": ("t,d\n1,2\n2,\n", {"duration_column": "d"}, r"line 3: duration is empty"),
    "no time column": ("t,d\n1,2\n", {"time_column": "start"}, r"no column 'start'"),
    "no duration column": ("t,d\n1,2\n", {"duration_column": "run_s"}, r"no column 'run_s'"),
    "end before start": (
        "t,end\n1,2\n10,5\n",
        {"end_column": "end"},
        r"line 3: end '5' is before the request's time",
    ),
    "bad end": ("t,end\n1,2\n2,later\n", {"end_column": "end"}, r"line 3: bad timestamp 'later'"),
    "end and duration": (
        "t,end\n1,2\n",
        {"end_column": "end", "duration_column": "end"},
        "alternatives",
    ),
    "no end column": ("t,end\n1,2\n", {"end_column": "stop"}, r"no column 'stop'"),
    "end without a time column": (
        "t,end\n1,2\n",
        {"end_column": "end", "time_column": ""},
        "need a request CSV with a time column",
    ),
}


@pytest.mark.parametrize("case", BAD_COLUMNS)
def test_bad_durations_ends_and_missing_columns(tmp_path: Path, case: str) -> None:
    content, options, message = BAD_COLUMNS[case]
    p = tmp_path / "bad.csv"
    p.write_text(content)
    kwargs = {"time_column": "t", **options}
    if not kwargs["time_column"]:
        del kwargs["time_column"]
    with pytest.raises(TraceError, match=r"bad\.csv: ") as err:
        read_trace(p, **kwargs)
    assert err.match(message)


def test_requests_with_end_times_are_in_flight_until_then(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    # Alibaba's raw pod list: creation and deletion times; a pod still running
    # has no deletion time and is in flight until the trace's last time.
    p.write_text("name,num_gpu,creation_time,deletion_time\na,1,100,103.5\nb,1,101,\nc,0,102,110\n")
    tr = read_trace(p, time_column="creation_time", end_column="DELETION_TIME")
    assert tr.shape == "requests" and tr.busy is not None
    assert list(tr.arrivals[:3]) == [1.0, 1.0, 1.0]
    assert len(tr.busy) == 10  # to the last end, 110
    assert math.isclose(sum(tr.busy), 3.5 + 9 + 8, rel_tol=1e-6)
    assert list(tr.busy[:4]) == [1.0, 2.0, 3.0, 2.5]
    assert any("1 request(s) with no end" in n for n in tr.notes)
    with_durations = tmp_path / "d.csv"
    with_durations.write_text("t,d\n100,3.5\n102,8\n")
    ends = tmp_path / "e.csv"
    ends.write_text("t,end\n100,103.5\n102,110\n")
    a = read_trace(with_durations, time_column="t", duration_column="d")
    b = read_trace(ends, time_column="t", end_column="end")
    assert a.busy is not None and b.busy is not None and list(a.busy) == list(b.busy)


def test_token_columns_by_name(tmp_path: Path) -> None:
    p = tmp_path / "burstgpt.csv"
    # BurstGPT's header: relative seconds and its own names for the token counts.
    p.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,5000,50,5050,Conversation log\n"
        "6,GPT-4,0,100,100,API log\n"
    )
    tr = read_trace(p, time_column="Timestamp", token_columns="Request tokens,Response tokens")
    assert tr.busy is not None
    assert math.isclose(sum(tr.busy), (1 + 1) + 2, rel_tol=1e-6)  # as the token model says
    assert read_trace(p, time_column="Timestamp").busy is None  # no token model unless asked
    with pytest.raises(TraceError, match="two names"):
        read_trace(p, time_column="Timestamp", token_columns="Request tokens")
    with pytest.raises(TraceError, match=r"no column 'Output'"):
        read_trace(p, time_column="Timestamp", token_columns="Request tokens,Output")
    p.write_text("Timestamp,In,Out\n5,10,20\n6,10,-3\n")
    with pytest.raises(TraceError, match=r"line 3: Out '-3' must be a count of tokens"):
        read_trace(p, time_column="Timestamp", token_columns=("In", "Out"))


def test_json_lines_as_mooncake_publishes_them(tmp_path: Path) -> None:
    p = tmp_path / "mooncake.jsonl"
    p.write_bytes(
        gzip.compress(
            b'{"timestamp": 0, "input_length": 5000, "output_length": 50, "hash_ids": [1, 2]}\n'
            b'{"timestamp": 2500, "input_length": 0, "output_length": 100, "hash_ids": []}\n'
        )
    )
    tr = read_trace(p, period_s=0.001, token_columns="input_length,output_length")
    assert tr.shape == "requests (JSON Lines)"
    assert list(tr.arrivals[:3]) == [1.0, 0.0, 1.0]  # milliseconds, read as such
    assert tr.busy is not None and math.isclose(sum(tr.busy), 2 + 2, rel_tol=1e-6)
    with pytest.raises(TraceError, match=r"line 1: no key 'ts'"):
        read_trace(p, time_column="ts")


@pytest.mark.parametrize(
    "content", [b"", b"\n\n", b"\x1f\x8b\x08garbage", b"BZh9garbage", _tar(b"", "w")[:600]]
)
def test_empty_or_corrupt_files(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(TraceError, match=r"bad\.txt"):
        read_trace(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "nope.csv")


def test_wide_columns_sum_the_series_at_each_numbered_interval(tmp_path: Path) -> None:
    """Azure Functions' invocation counts: one row per function, a column per minute."""
    p = tmp_path / "invocations_per_function_md.anon.d01.csv"
    minutes = ",".join(str(m) for m in range(1, 1441))
    rows = [
        "o1,a1,f1,http," + ",".join("6" if m == 3 else "0" for m in range(1, 1441)),
        "o1,a1,f2,timer," + ",".join("60" if m in (3, 1440) else "0" for m in range(1, 1441)),
    ]
    p.write_text(f"HashOwner,HashApp,HashFunction,Trigger,{minutes}\n" + "\n".join(rows) + "\n")
    tr = read_trace(p, period_s=60)
    assert tr.shape == "per-interval columns" and tr.interval_s == 60
    assert len(tr.arrivals) == 1440 * 60
    # Minute 3 (the third column) holds both functions' 66 invocations, a second at a time.
    third = tr.arrivals[2 * 60 : 3 * 60]
    assert math.isclose(sum(third), 66.0, rel_tol=1e-5) and max(third) == min(third)
    assert math.isclose(sum(tr.arrivals), 126.0, rel_tol=1e-5)
    assert tr.notes == ["2 rows summed per numbered column"]
    # Read as seconds, the reader says the 1440 columns look like minutes.
    assert any("--period-s 60" in n for n in read_trace(p).notes)
