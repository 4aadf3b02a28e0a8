"""The real monitoring parts against a running `fleet up`: Debian's Prometheus scrapes
every service, the dashboard's queries and the alert expressions run on it, and a held
request left waiting fires an alert that Alertmanager delivers to a webhook.

Needs `prometheus` and `prometheus-alertmanager` (scripts/install-observability.sh);
skips without them. Every server listens on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from contracts import subjects
from contracts.commands import ProvisionRequest
from services.kit.bus import gather_replies
from services.kit.service import encode
from tests.test_cli_up import FLEET, Lines, env_for
from tools.natsserver import free_port
from tools.registry import EMBEDDED, available

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
HOLD_TIMEOUT_S = 40
"""Short, so HeldRequestWaiting (a quarter of the timeout) fires after 10 s of waiting."""

pytestmark = [
    pytest.mark.observability,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="prometheus / prometheus-alertmanager not installed "
        "(scripts/install-observability.sh)",
    ),
]


class Webhook:
    """A local HTTP server that keeps what Alertmanager posts to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(json.loads(body))
                hook.arrived.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for doc in self.received for a in doc["alerts"]]

    def wait_for(self, alertname: str, timeout_s: float) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for alert in self.alerts():
                if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                    return alert
            self.arrived.clear()
            self.arrived.wait(min(1.0, max(0.01, end - time.monotonic())))
        names = sorted({a["labels"]["alertname"] for a in self.alerts()})
        raise AssertionError(f"{alertname} never reached the webhook; it got {names}")


@pytest.fixture
def fleet_up(tmp_path: Path) -> Iterator[tuple[Lines, Path]]:
    if not available(EMBEDDED):
        pytest.skip("no service built yet")
    env = env_for(tmp_path)
    env.update(
        FLEET_BUDGET__APPROVAL_THRESHOLD_USD_PER_HOUR="0.01",  # every command waits for a person
        FLEET_BUDGET__HOLD_TIMEOUT_S=str(HOLD_TIMEOUT_S),
    )
    proc = subprocess.Popen(
        [*FLEET, "up", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Lines(proc), tmp_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def service_ports(url: str) -> dict[str, int]:
    """Each service's /metrics port, from the `$SRV.INFO` metadata it registers."""
    nc = await nats.connect(url)
    try:
        infos = await gather_replies(nc, "$SRV.INFO", wait_s=1.0)
        return {
            i["name"]: int(i["metadata"]["http_port"])
            for i in infos
            if i.get("name") in EMBEDDED and "http_port" in i.get("metadata", {})
        }
    finally:
        await nc.close()


async def hold_a_request(url: str) -> None:
    nc = await nats.connect(url)
    try:
        request = ProvisionRequest(
            id="obs-held-1", requester="observability-test", pool="h100", count=1
        )
        await nc.jetstream().publish(subjects.PROVISION_REQUESTED, encode(request))
    finally:
        await nc.close()


def query(http: httpx.Client, expr: str) -> list[Any]:
    """The result of an instant query; fails the test if Prometheus cannot run it."""
    reply = http.get("/api/v1/query", params={"query": expr})
    doc = reply.json()
    assert doc["status"] == "success", f"{expr!r}: {doc.get('error')}"
    result: list[Any] = doc["data"]["result"]
    return result


def ready(http: httpx.Client) -> bool:
    """Prometheus answers 503 until its storage is open and its rules loaded."""
    try:
        return http.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def wait_until(what: str, fn: Any, timeout_s: float) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s:.0f} s")


def test_prometheus_scrapes_fleet_up_and_a_held_request_pages_someone(
    fleet_up: tuple[Lines, Path], tmp_path: Path
) -> None:
    assert PROMETHEUS is not None and ALERTMANAGER is not None
    lines, cwd = fleet_up
    lines.wait_for("services ready", 120)
    url = (cwd / ".fleet" / "nats.url").read_text().strip()
    ports = asyncio.run(service_ports(url))
    assert set(ports) == set(available(EMBEDDED))

    webhook = Webhook()
    am_port, prom_port = free_port(), free_port()
    am_config = {
        "route": {
            "receiver": "test",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "test",
                "webhook_configs": [{"url": f"http://127.0.0.1:{webhook.port}/alerts"}],
            }
        ],
    }
    (tmp_path / "am.yml").write_text(yaml.safe_dump(am_config))
    # The shipped scrape config, pointed at this machine's ports and made quick.
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "fleetplane")
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
        for name, port in sorted(ports.items())
    ]
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [job],
    }
    (tmp_path / "prom.yml").write_text(yaml.safe_dump(prom_config))
    am = start(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    prom = start(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prom.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{prom_port}", timeout=10) as http:
            wait_until("Prometheus ready", lambda: ready(http), 60)
            wait_until(
                "every service scraped",
                lambda: len(query(http, 'up{job="fleetplane"} == 1')) == len(ports),
                60,
            )
            asyncio.run(hold_a_request(url))

            dash = json.loads((DEPLOY / "grafana" / "fleetplane.json").read_text())
            panel_exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
            rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
            alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
            with_data = {e for e in panel_exprs + alert_exprs if query(http, e)}
            # What a running `fleet up` must show at once (runner series need runners,
            # crash loops need failures, rates need two scrapes).
            for expr in (
                "max by (service) (fleet_service_ready)",
                "fleet_held_requests",
                "0.25 * fleet_held_timeout_seconds",
                'max by (provider) (fleet_provider_breaker_state{state="open"})',
                'process_resident_memory_bytes{job=~"fleetplane.*"}',
                'up{job=~"fleetplane.*"}',
                "fleet_budget_daily_usd",
            ):
                assert expr in with_data, f"{expr!r} returned no data"
            lag = wait_until(
                "consumer lag exported",
                lambda: query(http, "max by (durable) (fleet_consumer_pending_messages)"),
                30,
            )
            assert {s["metric"]["durable"] for s in lag} >= {
                "costguard-provisions",
                "provisioner-approved",
            }

            alert = webhook.wait_for("HeldRequestWaiting", HOLD_TIMEOUT_S + 30)
            assert alert["labels"]["severity"] == "warning"
            assert "held for approval" in alert["annotations"]["summary"]
            firing = query(http, 'ALERTS{alertname="HeldRequestWaiting",alertstate="firing"}')
            assert firing
    finally:
        stop(prom)
        stop(am)
        webhook.server.shutdown()
