"""Deployment files an operator applies as they are: the image, compose, Kubernetes
manifests, Prometheus rules (with promtool's own unit tests) and the dashboard."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.kit.config import load_settings
from services.provisioner.providers.simhost import stop_host
from tests.signing_helpers import signing
from tools.registry import ORDER, available, load
from tools.secure.identities import SERVICES as SECURE_SERVICES

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
    """Every object `kubectl apply -k deploy/k8s` creates, the generated ConfigMaps included."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kust["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    for gen in kust["configMapGenerator"]:
        data = {f: (K8S / f).read_text() for f in gen["files"]}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"], "namespace": kust["namespace"]},
                "data": data,
            }
        )
    return docs


def of_kind(*kinds: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] in kinds}


def workloads() -> dict[str, dict[str, Any]]:
    """fleetplane's services by name: a Deployment, or a StatefulSet where a store is kept."""
    found = of_kind("Deployment", "StatefulSet")
    return {n.removeprefix("fleet-"): d for n, d in found.items() if n.startswith("fleet-")}


def keeps_store(name: str) -> bool:
    """Whether the service opens a store (<store.dir>/<name>.db) that must outlive its pod."""
    return load(name).migrations is not None


def secrets() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]


# -- image and compose ---------------------------------------------------------


def test_dockerfile_runs_fleet_as_a_non_root_user_with_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert re.search(r"^USER fleet$", text, re.M)
    assert 'ENTRYPOINT ["fleet"]' in text and 'CMD ["run", "watcher"]' in text
    # The otlp extra is in the image, so `exporter = "otlp"` works in a container.
    assert "pip install '.[otlp]'" in text
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {d.split(">")[0] for d in extras["otlp"]} == {
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-exporter-otlp-proto-grpc",
    }
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


def test_compose_gives_a_volume_to_exactly_the_services_that_keep_a_store() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ORDER:
        state = [v for v in doc["services"][name]["volumes"] if v.endswith(":/var/lib/fleet")]
        if keeps_store(name):
            assert state == [f"{name}-data:/var/lib/fleet"], name
            assert f"{name}-data" in doc["volumes"]
        else:
            assert state == [], f"{name} keeps no store but has a volume for one"
            assert f"{name}-data" not in doc["volumes"]


def test_compose_observability_profile_runs_prometheus_and_alertmanager() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name in ("prometheus", "alertmanager"):
        assert services[name]["profiles"] == ["observability"]
    mounts = services["alertmanager"]["volumes"]
    assert "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in mounts
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    [am] = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_alertmanager_sends_every_alert_to_a_webhook() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers[config["route"]["receiver"]]["webhook_configs"][0]["url"].startswith("http")
    same = (K8S / "alertmanager.yml").read_text()
    assert same == (DEPLOY / "alertmanager" / "alertmanager.yml").read_text(), (
        "deploy/k8s/alertmanager.yml drifted from deploy/alertmanager/alertmanager.yml"
    )


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed")
def test_amtool_accepts_the_alertmanager_config() -> None:
    run = subprocess.run(
        ["amtool", "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


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


def test_one_workload_per_service_with_probes_resources_and_scrape_annotations() -> None:
    found = workloads()
    assert set(found) == set(ORDER)
    for name in ORDER:
        spec = found[name]["spec"]
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
        # FLEET_NATS__NKEYS_SEED names the file a Secret is mounted as, not a key.
        plain = [k for k in env if k != "FLEET_NATS__NKEYS_SEED"]
        assert all("KEY" not in k for k in plain), "secrets come from Secrets, not env values"
        if name in QUEUE_GROUPED:
            assert spec["replicas"] == 2, name


def test_services_with_a_store_keep_it_on_a_volume_claim() -> None:
    for name, work in workloads().items():
        pod = work["spec"]["template"]["spec"]
        [container] = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"] for v in pod["volumes"]}
        if keeps_store(name):
            assert work["kind"] == "StatefulSet", f"{name} keeps a store: a pod loses emptyDir"
            assert work["spec"]["replicas"] == 1, "a second pod would have a store of its own"
            assert work["spec"]["serviceName"] == f"fleet-{name}"
            assert of_kind("Service")[f"fleet-{name}"]["spec"]["clusterIP"] == "None"
            [claim] = work["spec"]["volumeClaimTemplates"]
            assert claim["metadata"]["name"] == "state" and "state" not in volumes
            assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert mounts["state"] == "/var/lib/fleet"
        else:
            assert work["kind"] == "Deployment", name
            scratch = {v["name"]: v for v in pod["volumes"]}.get("state", {"emptyDir": {}})
            assert "emptyDir" in scratch, f"{name} keeps nothing that needs a volume"


def test_disruption_budgets_are_ones_the_replica_counts_can_honour() -> None:
    found, services, pdbs = workloads(), of_kind("Service"), of_kind("PodDisruptionBudget")
    for name, work in found.items():
        labels = work["spec"]["selector"]["matchLabels"]
        assert work["spec"]["template"]["metadata"]["labels"] == labels
        assert services[f"fleet-{name}"]["spec"]["selector"] == labels
        replicas = work["spec"]["replicas"]
        pdb = pdbs.get(f"fleet-{name}")
        if replicas == 1:
            # minAvailable 1 would block every node drain; maxUnavailable 1 protects nothing.
            assert pdb is None, f"{name}: a budget over one pod either blocks drains or is empty"
            continue
        assert pdb is not None, name
        assert pdb["spec"]["selector"]["matchLabels"] == labels
        keep = pdb["spec"].get("minAvailable", replicas - pdb["spec"].get("maxUnavailable", 0))
        assert 1 <= keep < replicas, f"{name}: keeps {keep} of {replicas}"


def test_config_is_generated_so_a_change_rolls_the_pods() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = {g["name"]: g["files"] for g in kust["configMapGenerator"]}
    assert generated["fleet-config"] == ["fleet.toml"]
    assert generated["alertmanager-config"] == ["alertmanager.yml"]
    assert not of_kind("ConfigMap").keys() - generated.keys(), "a hand-written ConfigMap"
    shipped = tomllib.loads((K8S / "fleet.toml").read_text())
    example = tomllib.loads((DEPLOY / "fleet.example.toml").read_text())
    assert shipped["nats"]["replicas"] == 3
    shipped["nats"]["replicas"] = example["nats"]["replicas"]
    assert shipped == example, "deploy/k8s/fleet.toml drifted from deploy/fleet.example.toml"
    for name, work in workloads().items():
        volumes = {v["name"]: v for v in work["spec"]["template"]["spec"]["volumes"]}
        # kustomize renames generated ConfigMaps (name-<hash>) only where they are referenced.
        assert volumes["config"]["configMap"]["name"] == "fleet-config", name


def test_each_service_gets_only_its_own_secrets_and_nats_identity() -> None:
    """Each service mounts its own nkey seed (`fleet init --identities-only` writes one per
    service: tools/secure) and only binds to what the fleet-init Job creates."""
    by_name = {s["metadata"]["name"]: s for s in secrets()}
    for secret in by_name.values():
        for key, value in secret["stringData"].items():
            assert re.fullmatch(r"\$\{[A-Z_]+\}", value), (key, value)
    needs = {
        "brain": {"ANTHROPIC_API_KEY"},
        "runner": {"ANTHROPIC_API_KEY"},
        "provisioner": {f"FLEET_{p}_KEY" for p in ("VASTAI", "IONET", "RUNPOD", "LAMBDA")},
    }
    for name, work in workloads().items():
        assert name in SECURE_SERVICES, f"fleet init --identities writes no identity for {name}"
        spec = work["spec"]["template"]["spec"]
        [container] = spec["containers"]
        keys: set[str] = set()
        for source in container.get("envFrom", []):
            keys |= set(by_name[source["secretRef"]["name"]]["stringData"])
        assert keys == needs.get(name, set()), name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert not any("valueFrom" in e for e in container["env"]), name
        assert env["FLEET_NATS__INBOX_PREFIX"] == f"_INBOX.{name}"
        assert env["FLEET_NATS__CREATE_RESOURCES"] == "false"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        secret = volumes["nats-identity"]["secret"]
        assert secret["secretName"] == f"fleet-nats-{name}"
        [item] = secret["items"]
        assert env["FLEET_NATS__NKEYS_SEED"] == f"{mounts['nats-identity']}/{item['path']}"
        assert set(by_name[f"fleet-nats-{name}"]["stringData"]) == {item["key"]} == {"seed"}


def test_an_init_job_creates_the_streams_as_the_admin() -> None:
    [job] = of_kind("Job").values()
    spec = job["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["args"][0] == "init"
    creds = container["args"][container["args"].index("--creds") + 1]
    [secret] = [v["secret"] for v in spec["volumes"] if "secret" in v]
    assert secret["secretName"] == "fleet-nats-admin"
    assert secret["items"] == [{"key": "seed", "path": "admin.nk"}]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert creds in mounts
    assert _restricted_problems(spec["securityContext"], spec["containers"]) == []


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "nats-values.yaml",
        "secret.example.yaml",
    }
    assert set(kust["resources"]) == on_disk


def _restricted_problems(pod: dict[str, Any], containers: list[dict[str, Any]]) -> list[str]:
    """What the `restricted` Pod Security Standard refuses, for what these files set."""
    problems = []
    if pod.get("runAsNonRoot") is not True:
        problems.append("pod: runAsNonRoot")
    if pod.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod: seccompProfile")
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c.get('name')}: allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{c.get('name')}: capabilities.drop")
        if sc.get("privileged") or sc.get("runAsUser") == 0:
            problems.append(f"{c.get('name')}: root")
    return problems


def test_every_pod_passes_the_restricted_pod_security_level() -> None:
    ns = of_kind("Namespace")["fleetplane"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, work in of_kind("Deployment", "StatefulSet").items():
        spec = work["spec"]["template"]["spec"]
        assert _restricted_problems(spec["securityContext"], spec["containers"]) == [], name
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    nats_pod = values["podTemplate"]["merge"]["spec"]["securityContext"]
    parts = [values[k]["merge"] | {"name": k} for k in ("container", "reloader", "promExporter")]
    assert _restricted_problems(nats_pod, parts) == []
    box = values["natsBox"]
    box_pod = box["podTemplate"]["merge"]["spec"]["securityContext"]
    assert _restricted_problems(box_pod, [box["container"]["merge"] | {"name": "box"}]) == []


def test_nats_values_ask_for_a_three_node_jetstream_cluster_scraped_by_prometheus() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert values["promExporter"]["enabled"] is True and values["config"]["monitor"]["enabled"]
    notes = values["podTemplate"]["merge"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(values["promExporter"].get("port", 7777))
    # The generated authorization, from the nats-auth Secret, is included by the server.
    include = values["config"]["merge"]["$include"]
    [mount] = [p["value"] for p in values["container"]["patch"] if p["path"] == "/volumeMounts/-"]
    assert mount["mountPath"] == "/etc/nats-config/" + include.removeprefix("./")
    [volume] = [p["value"] for p in values["podTemplate"]["patch"]]
    assert volume["name"] == mount["name"] and volume["secret"]["secretName"] == "nats-auth"
    assert "auth.conf" in {s["metadata"]["name"]: s for s in secrets()}["nats-auth"]["stringData"]


def test_service_monitor_selects_every_service_port() -> None:
    mon = K8S / "monitoring"
    kust = yaml.safe_load((mon / "kustomization.yaml").read_text())
    [sm] = [yaml.safe_load((mon / r).read_text()) for r in kust["resources"]]
    assert sm["kind"] == "ServiceMonitor" and sm["apiVersion"] == "monitoring.coreos.com/v1"
    selector = sm["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    for name in ORDER:
        svc = of_kind("Service")[f"fleet-{name}"]
        assert selector.items() <= svc["metadata"]["labels"].items(), name
        assert ports <= {p["name"] for p in svc["spec"]["ports"]}, name


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for doc in [*manifests(), *secrets()]:
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


# -- Grafana and the metrics deploy/ relies on -------------------------------------

METRIC = re.compile(r"\b(?:fleet|process)_[a-z_]+")
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself rather than scraping them."""


def dashboard_exprs() -> dict[str, list[str]]:
    dash = json.loads((DEPLOY / "grafana" / "fleetplane.json").read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dash["panels"]}


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def used_metrics(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) | {m for m in PROMETHEUS_OWN if re.search(rf"\b{m}\{{", expr)}


def exported_names(registry: Any) -> set[str]:
    """Every series name `registry` exposes, as Prometheus sees it (counters with
    _total, histograms with _bucket/_sum/_count), labelled metrics with no child yet
    included."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        names |= {s.name for s in family.samples}
    return names


async def running_services_metrics(nats_url: str, store_dir: Path) -> set[str]:
    """Start every service against a real NATS, read each one's live registry, stop."""
    started = []
    names: set[str] = set()
    try:
        for name in ORDER:
            cls = load(name)
            settings = load_settings(
                cls.settings_type,
                env={},
                overrides={"store": {"dir": str(store_dir / name)}, "signing": signing(name)},
            )
            service = cls(settings, nats_url=nats_url)
            started.append(service)
            await service.start()
            assert service.state == "ready", name
            names |= exported_names(service.metrics.registry)
    finally:
        for service in reversed(started):
            await service.stop()
        # the provisioner's sim units report from their own process, which outlives it
        await asyncio.to_thread(stop_host, store_dir / "provisioner")
    return names


def test_dashboard_has_a_panel_for_every_alert_and_the_runner() -> None:
    panels = dashboard_exprs()
    assert len(panels) >= 12
    titles = " | ".join(t.lower() for t in panels)
    for words in ("ready and pending", "utilization", "budget", "dead letters", "p99", "verdicts"):
        assert words in titles
    dash = json.loads((DEPLOY / "grafana" / "fleetplane.json").read_text())
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    on_dashboard = {m for exprs in panels.values() for e in exprs for m in used_metrics(e)}
    for title, exprs in panels.items():
        assert any(used_metrics(e) for e in exprs), f"panel {title!r} queries no metric of ours"
    for alert, expr in alert_exprs().items():
        assert used_metrics(expr) & on_dashboard, f"no panel shows what {alert} watches"
    runner = {m for m in on_dashboard if m.startswith("fleet_runner_")}
    assert {"sessions_inflight", "capacity", "queue_depth", "request_seconds_bucket"} <= {
        m.removeprefix("fleet_runner_") for m in runner
    }


async def test_every_metric_deploy_uses_is_exported_by_a_running_service(
    nats_url: str, tmp_path: Path
) -> None:
    exported = await running_services_metrics(nats_url, tmp_path)
    used = {m for exprs in dashboard_exprs().values() for e in exprs for m in used_metrics(e)}
    used |= {m for e in alert_exprs().values() for m in used_metrics(e)}
    missing = used - exported - PROMETHEUS_OWN
    assert not missing, f"deploy/ queries metrics no service exports: {sorted(missing)}"
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= (
        exported
    )


# -- helpers -------------------------------------------------------------------------


def _works(cmd: list[str]) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    try:
        run = subprocess.run([*cmd, "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0
