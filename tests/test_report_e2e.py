"""Acceptance of `fleet report` over a real nats-server: a simulated week is played into
the streams in seconds (every message dated in the past week), the gateway and the
cost-guard run in process, and the CLI's JSON, HTML and answers are checked."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.history_helpers import ledger_by_day, week_services

FLEET = Path(sys.executable).with_name("fleet")
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)


async def fleet(*args: str, timeout_s: float = 240.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(FLEET),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def console_errors(page: Path, shot: Path) -> list[str]:
    """Open `page` in headless Chromium, take a screenshot, return the console's errors."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stderr.splitlines()
    return [line for line in lines if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture
async def week_fleet(nats_url: str, nc: Client, tmp_path: Path) -> AsyncIterator[Any]:
    """The week in the streams, the cost-guard caught up with it, the gateway serving."""
    async with week_services(nats_url, nc, tmp_path) as got:
        yield got


async def test_a_week_report_adds_up_to_the_ledger_and_renders(
    week_fleet: Any, nats_url: str, nc: Client, tmp_path: Path
) -> None:
    week, end = week_fleet
    page = tmp_path / "week.html"
    code, out, err = await fleet(
        "report",
        "--days",
        "7",
        "--json",
        "--html",
        str(page),
        "--replay-days",
        "0.5",
        "--nats",
        nats_url,
    )
    assert code == 0, err
    doc = json.loads(out)
    ledger = ledger_by_day(week.units, end)
    spend = doc["spend"]
    assert spend["total_usd"] == pytest.approx(sum(ledger.values()), abs=0.01)
    for day, usd in ledger.items():
        assert spend["by_day"][day] == pytest.approx(usd, abs=0.01), day
    today = time.strftime("%Y-%m-%d", time.gmtime())
    # The running cost-guard's own ledger, read by the gateway while building the report.
    assert spend["ledger_today_usd"] == pytest.approx(spend["by_day"].get(today, 0.0), abs=0.01)
    assert sum(spend["by_gpu"].values()) == pytest.approx(spend["total_usd"], abs=0.01)
    assert doc["read"]["FLEET_ROLLUP"] == len(week.rollup)
    kinds = {r["kind"] for r in doc["recommendations"]}
    assert {"reserve_base", "gpu_type", "budget", "reliability", "policy"} <= kinds
    assert all(r["numbers"] for r in doc["recommendations"])
    assert doc["budget"]["denied"] + doc["budget"]["held"] == len(week.verdicts)
    text = page.read_text()
    assert "<script" not in text and "<svg" in text and "Recommendations" in text
    for bad in (b'{"days": 0}', b'{"days": 99}', b'{"pool": "no such"}', b""):
        reply = json.loads((await nc.request("fleet.api.fleet_report", bad, timeout=10)).data)
        assert reply["error"]["code"] == 400, bad
    # A mistyped pool is named as unknown, not answered with an empty report.
    code, out, err = await fleet("report", "--pool", "h1OO", "--nats", nats_url)
    assert code == 1 and out == "", out
    assert "no pool 'h1OO' in the configuration or in the last 7 days" in err
    pool = week.rollup[0].pool
    code, out, err = await fleet("report", "--pool", pool, "--json", "--nats", nats_url)
    assert code == 0 and json.loads(out)["read"]["FLEET_ROLLUP"] > 0, err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_the_console_check_catches_a_page_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><script>console.error('boom'); nosuch();</script>")
    assert console_errors(bad, tmp_path / "bad.png")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_the_html_report_opens_in_headless_chromium_without_console_errors(
    week_fleet: Any, nats_url: str, tmp_path: Path
) -> None:
    page = tmp_path / "week.html"
    code, _, err = await fleet(
        "report", "--days", "7", "--html", str(page), "--replay-days", "0", "--nats", nats_url
    )
    assert code == 0, err
    shot = tmp_path / "report.png"
    assert await asyncio.to_thread(console_errors, page, shot) == []
    assert shot.stat().st_size > 20_000  # a page was drawn, not a blank


async def test_bad_report_arguments_are_refused_plainly(nats_url: str) -> None:
    code, _, err = await fleet("report", "--days", "0", "--nats", nats_url)
    assert code == 2 and "--days 0" in err
    code, _, err = await fleet("report", "--days", "2", "--replay-days", "5", "--nats", nats_url)
    assert code == 2 and "--replay-days" in err
