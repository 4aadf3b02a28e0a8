"""The `fleet` command as an operator meets it: Ctrl-C on `fleet up` drains the
services before NATS goes, `--version`, one line (not a traceback) when there is no
NATS server, and progress while a benchmark runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.test_cli_up import FLEET, Lines, env_for, fleet
from tools.natsserver import free_port
from tools.registry import EMBEDDED, available

REPO = Path(__file__).resolve().parents[1]


def test_ctrl_c_on_fleet_up_stops_every_service_before_the_nats_server(tmp_path: Path) -> None:
    if not available(EMBEDDED):
        pytest.skip("no service built yet")
    # A terminal's Ctrl-C signals the whole foreground process group: its own session here.
    proc = subprocess.Popen(
        [*FLEET, "up", "--port", str(free_port())],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = Lines(proc)
    try:
        lines.wait_for("services ready", 120)
        os.killpg(proc.pid, signal.SIGINT)
        lines.wait_for("fleet up: stopped", 60)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    before_stop = lines.seen[: next(i for i, s in enumerate(lines.seen) if "up: stopped" in s)]
    said_stopped = {s.split("│")[0].strip() for s in before_stop if s.rstrip().endswith("stopped")}
    assert set(available(EMBEDDED)) <= said_stopped, "every service drained and said so"
    lost = [s for s in before_stop if "nats disconnected" in s]
    assert lost == [], "a service lost NATS while it drained:\n" + "".join(lost)


def test_version_is_the_installed_distribution() -> None:
    out = subprocess.run([*FLEET, "--version"], capture_output=True, text=True, cwd=REPO)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert out.returncode == 0 and out.stdout.strip() == f"fleet {project['version']}"


@pytest.mark.parametrize(
    "verb",
    [
        ["status"],
        ["tail", "--count", "1"],
        ["approve", "req-1"],
        ["ask", "hello"],
        ["loadgen", "--agent", "assistant", "--users", "1", "--rate", "1", "--duration", "1"],
        ["up"],
    ],
    ids=lambda v: v[0],
)
def test_no_nats_server_is_one_line_that_says_what_to_do(verb: list[str], tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
    out = fleet(tmp_path, *verb, "--nats", url, timeout=60)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 1
    assert len(text.splitlines()) == 1, text
    assert "cannot reach NATS" in text and url in text


def test_bench_shows_what_it_is_doing_on_stderr(tmp_path: Path) -> None:
    small = ["--events", "2000", "--units", "50", "--pools", "5"]
    out = subprocess.run(
        [sys.executable, "-m", "tools", "bench", "watcher", *small],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
        env=env_for(tmp_path),
    )
    assert out.returncode in (0, 1), out.stderr
    phases = [line for line in out.stderr.splitlines() if line.startswith("fleet bench watcher:")]
    assert any("publishing 2,000 telemetry events" in p for p in phases), out.stderr
    assert any("decide()" in p for p in phases)
    assert "events/s" in out.stdout and "events/s" not in out.stderr


@pytest.mark.parametrize(
    ("verb", "says"),
    [
        (["tail", "fleet..x", "--count", "1"], "not a valid NATS subject"),
        (["tail", "fleet.unit.a b", "--count", "1"], "not a valid NATS subject"),
        (["jobs", "tail", "bad id"], "job id 'bad id' is not a valid subject token"),
        (["ask", "--agent", "a b", "hi"], "agent name 'a b' is not a valid subject token"),
    ],
    ids=["empty-token", "space", "job-id", "agent"],
)
def test_a_name_no_subject_takes_is_one_line_not_a_traceback(
    verb: list[str], says: str, nats_server: str, tmp_path: Path
) -> None:
    out = fleet(tmp_path, *verb, "--nats", nats_server, timeout=60)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 2, text
    assert len(text.splitlines()) == 1, text
    assert says in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("verb", "says"),
    [
        (["jobs", "submit", "--count", "0"], "argument --count: 0 is below 1"),
        (["jobs", "submit", "--count", "-1"], "argument --count: -1 is below 1"),
        (["jobs", "list", "--limit", "x"], "argument --limit: 'x' is not a whole number"),
        (["tail", "--since", "10x"], "argument --since: '10x': use a number with s, m, h or d"),
        (["jobs", "tail", "--since", "1w"], "argument --since: '1w'"),
    ],
    ids=["count-0", "count-negative", "limit", "tail-since", "jobs-since"],
)
def test_a_bad_argument_is_a_usage_error_that_changes_nothing(
    verb: list[str], says: str, tmp_path: Path
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there: nothing is reached
    out = fleet(tmp_path, *verb, "--nats", url, timeout=60)
    assert out.returncode == 2 and says in out.stderr, out.stderr


def test_fleet_status_leaves_out_empty_pools_of_deleted_agents_but_not_configured_ones() -> None:
    import io

    from rich.console import Console

    from tools.verbs.status import render

    def pool(name: str, ready: int = 0) -> dict[str, object]:
        return {"metrics": {"pool": name, "units_ready": ready, "inflight": 2.0 * ready}}

    names = ("h100", "agents-gone", "agents-live", "adhoc-a100")
    doc = {
        "services": [],
        "streams": [],
        "pools": {"pools": [pool(n, ready=int(n == "agents-live")) for n in names]},
        "scaling": {"pools": {"adhoc-a100": {"desired": 1}}},
    }
    out = io.StringIO()
    render(doc, Console(file=out, width=160, color_system=None))
    table = out.getvalue().split("empty agent and ad-hoc pools not shown:")
    assert len(table) == 2, out.getvalue()
    shown, hidden = table
    # A configured pool with nothing is still a pool; an agent's with a runner, an ad-hoc
    # one still wanted, too. Only the deleted agent's is left out, and named.
    assert all(n in shown for n in ("h100", "agents-live", "adhoc-a100"))
    assert "agents-gone" not in shown and "agents-gone" in hidden.splitlines()[0]


def test_asking_an_agent_nobody_serves_says_so_without_an_error_code(
    nats_url: str, tmp_path: Path
) -> None:
    out = fleet(tmp_path, "ask", "--agent", "agents.nobody", "hi", "--nats", nats_url, timeout=60)
    assert out.returncode != 0
    assert "no agent 'agents.nobody' is answering on NATS" in out.stderr, out.stderr
    assert "code" not in out.stderr  # not an answer of the agent's, so no JSON-RPC code


def test_tail_tells_an_operators_decision_from_a_verdict() -> None:
    import json

    from tools.tailfmt import line

    approve = {"approve": True, "operator": "alice", "reason": "planned launch", "ts": 1.0}
    reject = {"approve": False, "operator": "bob", "ts": 1.0}
    verdict = {"id": "prov-1", "decision": "approved", "usd_per_hour": 2.5, "ts": 1.0}
    said = [
        line(subject, json.dumps(doc).encode()).plain
        for subject, doc in (
            ("fleet.budget.decide.prov-1", approve),
            ("fleet.budget.decide.prov-2", reject),
            ("fleet.budget.approved", verdict),
        )
    ]
    assert "approve asked for [prov-1] by alice" in said[0] and "planned launch" in said[0]
    assert "reject asked for [prov-2] by bob" in said[1]
    assert "APPROVED [prov-1] $2.50/h" in said[2]
