"""Rebuild the evaluation set of real public traces from their public sources.

    python -m tools.replay.fetch_traces DIR [--from MIRROR]

downloads each source file (pinned to a commit of its public GitHub repository)
and writes the trace `fleet replay` reads into DIR, with `eval.json` (how to
replay each: columns, period unit) that `fleet replay --eval DIR` uses.
`--from MIRROR` reads `MIRROR/<owner>/<repo>/<path>` instead of downloading.
docs/traces.md describes every trace, its licence and its shape.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "eval.json"


@dataclass(frozen=True)
class Source:
    """One file in a public GitHub repository, at a pinned commit."""

    owner: str
    repo: str
    commit: str
    path: str

    @property
    def url(self) -> str:
        """Where the file is downloaded from."""
        return (
            f"https://raw.githubusercontent.com/{self.owner}/{self.repo}/{self.commit}/{self.path}"
        )


@dataclass(frozen=True)
class Entry:
    """One trace of the set: its sources, how it is built and how it is replayed."""

    file: str
    kind: str
    sources: tuple[Source, ...]
    build: Callable[[list[bytes]], bytes]
    replay: dict[str, Any] = field(default_factory=dict)
    """Options for `fleet replay` (time_column, duration_column, end_column,
    token_columns, period_s, skip_zero_runs_s: 0 where the trace's long zero runs
    are real silence)."""


def _same(raw: list[bytes]) -> bytes:
    return raw[0]


def _gzip(raw: list[bytes]) -> bytes:
    return gzip.compress(raw[0], mtime=0)


def _pods(raw: list[bytes]) -> bytes:
    """GPU pods: creation time and seconds alive (deletion - creation), GPU pods only."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["creation_time", "duration_s", "num_gpu"])
    for row in csv.DictReader(io.StringIO(raw[0].decode())):
        if int(row["num_gpu"] or 0) <= 0 or not row["deletion_time"]:
            continue
        start, end = int(row["creation_time"]), int(row["deletion_time"])
        w.writerow([start, max(0, end - start), row["num_gpu"]])
    return gzip.compress(out.getvalue().encode(), mtime=0)


def _functions(raw: list[bytes]) -> bytes:
    """Azure Functions 2019 rows (one per function, one column per minute): the
    invocations of all functions per minute, as `minute,count`."""
    rows = list(csv.reader(io.StringIO(raw[0].decode())))
    header, body = rows[0], rows[1:]
    minutes = [i for i, name in enumerate(header) if name.isdigit()]
    lines = ["minute,count"]
    for i in minutes:
        lines.append(f"{header[i]},{sum(int(r[i] or 0) for r in body)}")
    return ("\n".join(lines) + "\n").encode()


CATALOG: tuple[Entry, ...] = (
    Entry(
        "nasa_1995_per_second.tbz2",
        "web requests, per second, 2 months",
        (
            Source(
                "reconfigurable-ml-pipeline",
                "web-service-datasets",
                "7404ad6643602943511e75ab3095fb1ccc990fd1",
                "dataset/nasa/workload.tbz2",
            ),
        ),
        _same,
    ),
    Entry(
        "worldcup98_per_minute.csv.gz",
        "web requests, per minute, 3 months",
        (
            Source(
                "sc20tcl",
                "Dissertation",
                "08b663d0580165ed95043a41ec102fde00acd01a",
                "RequstsPerMinute.csv",
            ),
        ),
        _gzip,
    ),
    Entry(
        "azure_llm_code_2023-11-16.csv.gz",
        "LLM inference requests with tokens, 1 hour",
        (
            Source(
                "Azure",
                "AzurePublicDataset",
                "b469a113cedca53ddc3bdea71a143dc4b7d8700c",
                "data/AzureLLMInferenceTrace_code.csv",
            ),
        ),
        _gzip,
    ),
    Entry(
        "alibaba_genai_lora_2024.csv.gz",
        "GPU image-generation requests with run times, 3 weeks",
        (
            Source(
                "alibaba",
                "clusterdata",
                "7a6c496e4f4b6ce6150be8f881cb051bf2abff42",
                "cluster-trace-v2026-GenAI/lora_request_trace.csv",
            ),
        ),
        _gzip,
        {
            "time_column": "gmt_create",
            "duration_column": "exec_time_seconds",
            "skip_zero_runs_s": 0,
        },
    ),
    Entry(
        "alibaba_gpu_2023_pods.csv.gz",
        "GPU cluster pods (batch and services) with lifetimes, months",
        (
            Source(
                "alibaba",
                "clusterdata",
                "7a6c496e4f4b6ce6150be8f881cb051bf2abff42",
                "cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv",
            ),
        ),
        _pods,
        {"time_column": "creation_time", "duration_column": "duration_s", "skip_zero_runs_s": 0},
    ),
    Entry(
        "azure_functions_2019_sample_per_minute.csv",
        "serverless function invocations, per minute, 1 day",
        (
            Source(
                "vhive-serverless",
                "loader",
                "f2113a7ee77d0fa05b4c5ea30206dec29384b82b",
                "data/traces/example/invocations.csv",
            ),
        ),
        _functions,
        {"period_s": 60, "skip_zero_runs_s": 0},
    ),
)


def _read(src: Source, mirror: Path | None) -> bytes:
    if mirror is not None:
        return (mirror / src.owner / src.repo / src.path).read_bytes()
    import httpx

    resp = httpx.get(src.url, follow_redirects=True, timeout=120)
    resp.raise_for_status()
    return resp.content


def build(dest: Path, mirror: Path | None = None, only: list[str] | None = None) -> list[str]:
    """Write the traces (all, or those named in `only`) and the manifest into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / MANIFEST
    manifest: dict[str, Any] = (
        json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    )
    written = []
    for entry in CATALOG:
        if only and entry.file not in only:
            continue
        raw = [_read(s, mirror) for s in entry.sources]
        (dest / entry.file).write_bytes(entry.build(raw))
        manifest[entry.file] = {
            "kind": entry.kind,
            "sources": [s.url for s in entry.sources],
            **entry.replay,
        }
        written.append(entry.file)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the set into DIR."""
    p = argparse.ArgumentParser(
        prog="python -m tools.replay.fetch_traces",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dest", type=Path, help="directory to write the traces into")
    p.add_argument(
        "--from",
        dest="mirror",
        type=Path,
        default=None,
        metavar="MIRROR",
        help="read MIRROR/<owner>/<repo>/<path> instead of downloading",
    )
    p.add_argument("--only", nargs="+", default=None, metavar="FILE", help="only these traces")
    args = p.parse_args(argv)
    try:
        for name in build(args.dest, args.mirror, args.only):
            print(f"wrote {args.dest / name}")
    except (OSError, ValueError) as exc:
        print(f"fetch_traces: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
