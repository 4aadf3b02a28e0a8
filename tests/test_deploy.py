"""Deployment files an operator applies as they are: the image, compose, Kubernetes
manifests, Prometheus rules (with promtool's own unit tests) and the dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.kit.config import load_settings
from tools.registry import ORDER, available, load

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
SINGLETONS = {"costguard", "scaler"}
"""Services that hold a lease and so may run two replicas with one active."""
QUEUE_GROUPED = {"gateway", "runner"}
"""Services whose replicas share work through queue groups."""


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("nats-values.yaml", "kustomization.yaml"):
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


# -- image and compose ---------------------------------------------------------


def test_dockerfile_runs_fleet_as_a_non_root_user_with_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER fleet$", text, re.M)
    assert 'ENTRYPOINT ["fleet"]' in text and 'CMD ["run", "watcher"]' in text
    assert "FLEET_HTTP__PORT=9090" in text and "EXPOSE 9090" in text
    assert (
        "HEALTHCHECK" in text and "/healthz" in text and "curl" not in text.split("HEALTHCHECK")[1]
    )


def test_example_config_loads_for_every_service() -> None:
    path = DEPLOY / "fleet.example.toml"
    sections = tomllib.loads(path.read_text())
    assert {"budget", "pools", "providers", "runner", "watcher", "brain", "lease"} <= set(sections)
    for name in available():
        settings = load_settings(load(name).settings_type, str(path), env={})
        assert settings.nats.replicas == 1, name
    assert "api_key" not in path.read_text().replace("api_key_file", "")


def test_compose_runs_every_service_against_nats_with_secrets_from_a_file() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert services["nats"]["image"].startswith("nats:2.10")
    assert "-js" in services["nats"]["command"] and services["nats"]["volumes"]
    for name in ORDER:
        svc = services[name]
        assert svc["command"] == ["run", name]
        assert svc["environment"]["FLEET_NATS_URL"] == "nats://nats:4222"
        assert svc["healthcheck"]["test"] and svc["restart"] == "unless-stopped"
        assert svc["env_file"] == ["secrets.env"]
        assert "./fleet.example.toml:/etc/fleet/fleet.toml:ro" in svc["volumes"]
        for key in svc["environment"]:
            assert "KEY" not in key and "PASSWORD" not in key, f"{name}: secret {key} inline"


def test_compose_config_is_valid(tmp_path: Path) -> None:
    tool = next((t for t in (["docker", "compose"], ["docker-compose"]) if _works(t)), None)
    if tool is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    where = tmp_path / "deploy"
    shutil.copytree(DEPLOY, where)
    # compose wants the env_file to exist; an operator copies it from the example.
    shutil.copy(DEPLOY / "secrets.env.example", where / "secrets.env")
    run = subprocess.run(
        [*tool, "-f", "compose.yaml", "config", "-q"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


# -- Kubernetes ------------------------------------------------------------------


def test_one_deployment_per_service_with_probes_resources_and_scrape_annotations() -> None:
    deployments = of_kind("Deployment")
    assert set(deployments) == {f"fleet-{name}" for name in ORDER}
    for name in ORDER:
        spec = deployments[f"fleet-{name}"]["spec"]
        pod = spec["template"]
        [container] = pod["spec"]["containers"]
        assert container["args"] == ["run", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["FLEET_NATS__REPLICAS"] == "3"
        assert all("KEY" not in k for k in env), "secrets come from the Secret, not env values"
        if name in SINGLETONS | QUEUE_GROUPED:
            assert spec["replicas"] == 2, name


def test_every_deployment_has_a_service_and_a_disruption_budget() -> None:
    deployments, services, pdbs = (
        of_kind("Deployment"),
        of_kind("Service"),
        of_kind("PodDisruptionBudget"),
    )
    for name, dep in deployments.items():
        labels = dep["spec"]["selector"]["matchLabels"]
        assert dep["spec"]["template"]["metadata"]["labels"] == labels
        assert services[name]["spec"]["selector"] == labels
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == labels


def test_configmap_carries_the_example_config_with_three_replicas() -> None:
    [cm] = of_kind("ConfigMap").values()
    shipped = tomllib.loads(cm["data"]["fleet.toml"])
    example = tomllib.loads((DEPLOY / "fleet.example.toml").read_text())
    assert shipped["nats"]["replicas"] == 3
    shipped["nats"]["replicas"] = example["nats"]["replicas"]
    assert shipped == example, "deploy/k8s/configmap.yaml drifted from deploy/fleet.example.toml"


def test_secret_is_a_template_without_values() -> None:
    [secret] = of_kind("Secret").values()
    assert all(re.fullmatch(r"\$\{[A-Z_]+\}", v) for v in secret["stringData"].values())


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "nats-values.yaml",
        "secret.example.yaml",
    }
    assert set(kust["resources"]) == on_disk


def test_nats_values_ask_for_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for doc in manifests():
        kv.validate(doc, "1.30.0", strict=True)


# -- Prometheus --------------------------------------------------------------------


def test_alert_rules_name_metrics_the_services_export() -> None:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"ServiceDown", "DeadLettersRising", "HandlerSlow", "BudgetNearlySpent"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    tested = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    covered = {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]}
    assert covered == set(alerts), "every alert has a promtool unit test"


def test_scrape_config_covers_compose_and_kubernetes() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = jobs["fleetplane"]["static_configs"][0]["targets"]
    assert targets == [f"{name}:9090" for name in ORDER]
    assert jobs["fleetplane-k8s"]["kubernetes_sd_configs"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_and_unit_tests_pass() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        run = subprocess.run(
            ["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stdout + run.stderr


# -- Grafana -------------------------------------------------------------------------

METRIC = re.compile(r"\bfleet_[a-z_]+")
NOT_EXPORTED_YET: dict[str, str] = {}
CHECKED = {
    "fleet_service_ready",
    "fleet_lease_held",
    "fleet_dead_letters_total",
    "fleet_messages_total",
    "fleet_handler_seconds",
    "fleet_pool_units",
    "fleet_pool_utilization",
    "fleet_budget_spent_today_usd",
    "fleet_budget_daily_usd",
    "fleet_verdicts_total",
}
"""Every metric deploy/ may use; each must be defined by a service."""
"""Panels and alerts wait on these; each test below turns red once the metric exists
(strict xfail), so the entry is removed the day the service exports it."""


def dashboard_metrics() -> set[str]:
    dash = json.loads((DEPLOY / "grafana" / "fleetplane.json").read_text())
    names: set[str] = set()
    for panel in dash["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        found = {_base(m) for e in exprs for m in METRIC.findall(e)}
        assert found, f"panel {panel['title']!r} queries no fleetplane metric"
        names |= found
    return names


def _base(metric: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", metric)


def _defined() -> set[str]:
    text = "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    return set(re.findall(r"[\"'](fleet_[a-z_]+)[\"']", text))


def test_dashboard_parses_with_the_expected_panels() -> None:
    dash = json.loads((DEPLOY / "grafana" / "fleetplane.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for words in ("ready and pending", "utilization", "budget", "dead letters", "p99", "verdicts"):
        assert words in titles
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


@pytest.mark.parametrize(
    "metric",
    [
        pytest.param(
            m,
            marks=pytest.mark.xfail(
                m in NOT_EXPORTED_YET, reason=NOT_EXPORTED_YET.get(m, ""), strict=True
            ),
        )
        for m in sorted(CHECKED | set(NOT_EXPORTED_YET))
    ],
)
def test_dashboard_metric_is_defined_in_services(metric: str) -> None:
    assert metric in dashboard_metrics() or metric in _alert_metrics()
    assert metric in _defined(), f"{metric} is used by deploy/ but no service defines it"


def test_dashboard_uses_no_metric_outside_the_checked_list() -> None:
    checked = CHECKED | set(NOT_EXPORTED_YET)
    assert dashboard_metrics() | _alert_metrics() <= checked


def _alert_metrics() -> set[str]:
    text = (PROM / "alerts.yml").read_text()
    exprs = [r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    return {_base(m) for e in exprs for m in METRIC.findall(e)}


# -- helpers -------------------------------------------------------------------------


def _works(cmd: list[str]) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    try:
        run = subprocess.run([*cmd, "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0
