"""`fleet up` as a new user runs it: NATS and the services come up, `fleet status` lists
them, `fleet tail --json` shows events, garbage is dead-lettered without killing anyone,
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.registry import EMBEDDED, available

REPO = Path(__file__).resolve().parents[1]
FLEET = [sys.executable, "-m", "tools"]


def env_for(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line or environment mentions `marker` (our temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            found.append(int(entry.name))
    return found


class Lines:
    """Reads a process's output on a thread so tests can wait for a line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.q.put(line)

    def wait_for(self, text: str, timeout_s: float) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(
            f"no line with {text!r} in {timeout_s} s; got:\n{''.join(self.seen[-40:])}"
        )


@pytest.fixture
def fleet_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Lines, Path]]:
    if not available(EMBEDDED):
        pytest.skip("no service built yet")
    proc = subprocess.Popen(
        [*FLEET, "up", "--port", "0"],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(proc)
    try:
        yield proc, lines, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def fleet(cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEET, *args], cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=timeout
    )


def test_up_status_tail_garbage_and_clean_stop(
    fleet_up: tuple[subprocess.Popen[str], Lines, Path],
) -> None:
    proc, lines, cwd = fleet_up
    lines.wait_for("services ready", 90)
    url = (cwd / ".fleet" / "nats.url").read_text().strip()

    status = fleet(cwd, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["nats"] == url  # found through .fleet/nats.url, and said
    names = {s["name"] for s in doc["services"]}
    assert set(available(EMBEDDED)) <= names
    assert {"FLEET_CMDS", "FLEET_EVENTS", "FLEET_DEAD"} <= {s["name"] for s in doc["streams"]}

    # The demo's first approved verdict is carried out: signed by the cost-guard, checked
    # by the provisioner, a unit event follows (not a dead letter on fleet.budget.*).
    units = fleet(cwd, "tail", "fleet.unit.>", "--since", "5m", "--json", "--count", "1")
    assert units.returncode == 0, units.stderr
    assert json.loads(units.stdout.splitlines()[0])["subject"].startswith("fleet.unit.")

    # Garbage on a subscribed subject: dead-lettered, and every service still answers.
    import asyncio

    import nats

    async def publish_garbage() -> None:
        nc = await nats.connect(url)
        await nc.publish("fleet.telemetry.demo.u1", b"\x00garbage{")
        await nc.jetstream().publish("fleet.unit.demo.u1", b'{"state": 42}')
        await nc.flush()
        await nc.close()

    asyncio.run(publish_garbage())
    tail = fleet(cwd, "tail", "fleet.dead.>", "--since", "5m", "--json", "--count", "1")
    assert tail.returncode == 0, tail.stderr
    event = json.loads(tail.stdout.splitlines()[0])
    assert event["subject"].startswith("fleet.dead.fleet.")
    assert event["data"]["reason"]
    again = json.loads(fleet(cwd, "status", "--json").stdout)
    assert {s["name"] for s in again["services"]} >= names
    assert all(s["state"] == "ready" for s in again["services"])

    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    assert processes_mentioning(str(cwd)) == []
    assert not (cwd / ".fleet" / "nats.url").exists()


def test_tail_json_prints_a_published_event(nats_url: str, tmp_path: Path) -> None:
    import asyncio

    import nats

    from contracts import subjects
    from contracts.events import Alert
    from services.kit.service import encode

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        from services.kit.bus import ensure_streams

        await ensure_streams(js)
        await js.publish(subjects.alert("warning"), encode(Alert(kind="test", message="hello")))
        await nc.close()

    asyncio.run(publish())
    out = fleet(
        tmp_path,
        "tail",
        "fleet.alert.>",
        "--since",
        "1m",
        "--json",
        "--count",
        "1",
        "--nats",
        nats_url,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["subject"] == "fleet.alert.warning"
    assert doc["data"]["message"] == "hello"
    human = fleet(
        tmp_path, "tail", "fleet.alert.>", "--since", "1m", "--count", "1", "--nats", nats_url
    )
    assert "fleet.alert.warning" in human.stdout and "hello" in human.stdout


def test_tail_since_replays_several_streams_in_the_order_they_were_stored(
    nats_url: str, tmp_path: Path
) -> None:
    import asyncio

    import nats

    from contracts.events import Alert
    from services.kit.bus import ensure_streams
    from services.kit.service import encode

    # Alerts (FLEET_EVENTS) and audit records (FLEET_AUDIT), one after the other.
    order = [
        ("fleet.alert.warning" if i % 2 == 0 else "fleet.audit.tail-test", f"event {i}")
        for i in range(6)
    ]

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_streams(js)
        for subject, message in order:
            await js.publish(subject, encode(Alert(kind="test", message=message)))
        await nc.close()

    asyncio.run(publish())
    out = fleet(
        tmp_path, "tail", "fleet.alert.>", "fleet.audit.>", "--since", "1m", "--json",
        "--count", "6", "--nats", nats_url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    docs = [json.loads(x) for x in out.stdout.splitlines()]
    assert [(d["subject"], d["data"]["message"]) for d in docs] == order


def test_every_verb_has_help_with_an_example() -> None:
    top = subprocess.run([*FLEET, "--help"], capture_output=True, text=True, cwd=REPO)
    assert top.returncode == 0
    for verb in ("up", "run", "status", "tail", "contracts"):
        out = subprocess.run([*FLEET, verb, "--help"], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0 and "example" in out.stdout, verb
