"""A new operator following docs/deploy.md gets a running fleet: `fleet keys deploy`
makes the signing keys, and every container of the Kubernetes manifests and of
compose.yaml, started as its runtime would start it (its args, its environment with
Secrets and interpolations resolved, its mounted files), reaches ready against a real
nats-server. What a manifest does not wire, the process does not get."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.kit.signing import Signer, read_seed
from tests.test_deploy import DEPLOY, manifests
from tools.natsserver import start_nats, stop_nats
from tools.registry import ORDER
from tools.signingkeys import SIGNERS

yaml = pytest.importorskip("yaml")

FLEET = str(Path(sys.executable).with_name("fleet"))
IMAGE_ENV = {"FLEET_STORE__DIR": "/var/lib/fleet"}
"""deploy/Dockerfile's ENV that a service reads (its host and port are set per run)."""


def fleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as the operator runs it, with none of this test run's FLEET_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [FLEET, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def make_keys(where: Path) -> Path:
    """docs/deploy.md's step: `fleet keys deploy ./signing`; returns the directory."""
    done = fleet("keys", "deploy", "signing", "--operator", "alice", cwd=where)
    assert done.returncode == 0, done.stderr
    return where / "signing"


# -- what the kubelet and compose do with a container's spec -----------------------


@dataclass
class Objects:
    """Secrets and ConfigMaps by name, as a cluster holds them."""

    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, kind: str, name: str, optional: bool = False) -> dict[str, str]:
        found = (self.secrets if kind == "secret" else self.configmaps).get(name)
        if found is None and not optional:
            raise LookupError(f"{kind} {name} not found")  # the kubelet would not start it
        return found or {}


def container_env(container: dict[str, Any], objects: Objects) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        kind = "secret" if "secretRef" in src else "configmap"
        ref = src.get("secretRef") or src["configMapRef"]
        env.update(objects.get(kind, ref["name"], ref.get("optional", False)))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            kind = "secret" if "secretKeyRef" in e["valueFrom"] else "configmap"
            ref = e["valueFrom"].get("secretKeyRef") or e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = objects.get(kind, ref["name"])[ref["key"]]
    return env


def mount_volumes(
    pod: dict[str, Any], container: dict[str, Any], objects: Objects, root: Path
) -> None:
    """Write the container's mounted Secrets and ConfigMaps under `root`."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        where = root / m["mountPath"].lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        vol = volumes.get(m["name"], {})
        spec = vol.get("secret") or vol.get("configMap")
        if spec is None:
            continue  # emptyDir or the claim: an empty directory
        kind = "secret" if "secret" in vol else "configmap"
        data = objects.get(kind, spec.get("secretName") or spec["name"])
        for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
            (where / item["path"]).write_text(data[item["key"]])
            (where / item["path"]).chmod(spec.get("defaultMode", 0o644))


def under(root: Path, value: str, mounts: list[str]) -> str:
    """`value` moved under `root` when it names a path in one of `mounts`."""
    inside = any(value == m or value.startswith(m.rstrip("/") + "/") for m in mounts)
    return str(root / value.lstrip("/")) if inside else value


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def http_port(self) -> int | None:
        """The port of the service's "ready" log line (fleet.toml logs JSON), once it is there."""
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("msg") == "ready":
                return int(json.loads(line)["http_port"])
        return None

    def ready(self, within_s: float = 90.0) -> str:
        """'ready' once it logs so and /readyz answers 200; else how it ended."""
        give_up = time.monotonic() + within_s
        while time.monotonic() < give_up and self.proc.poll() is None:
            if (port := self.http_port()) is not None:
                url = f"http://127.0.0.1:{port}/readyz"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return "ready" if answer.status == 200 else f"/readyz {answer.status}"
            time.sleep(0.1)  # polling its log until it says ready, not waiting out a race
        lines = self.log.read_text().strip().splitlines() or ["(no output)"]
        return f"exit {self.proc.poll()}: {lines[-1][:400]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_container(
    name: str, args: list[str], env: dict[str, str], root: Path, nats_url: str, mounts: list[str]
) -> Running:
    """Start `fleet <args>` as the container would: its env over the image's, paths in its
    mounts under `root`; one local NATS server, so replicas 1, and any free http port."""
    mounts = [*mounts, "/var/lib/fleet"]
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "ANTHROPIC_"))}
    full.update({k: under(root, v, mounts) for k, v in {**IMAGE_ENV, **env}.items()})
    full.update(
        FLEET_NATS_URL=nats_url,
        FLEET_NATS__REPLICAS="1",
        FLEET_HTTP__HOST="127.0.0.1",
        FLEET_HTTP__PORT="0",
    )
    work = root / "var/lib/fleet"
    work.mkdir(parents=True, exist_ok=True)
    log = root / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [FLEET, *(under(root, a, mounts) for a in args)],
            cwd=work, env=full, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Running(name, proc, log)


def run_pod(
    name: str, work: dict[str, Any], objects: Objects, root: Path, nats_url: str
) -> Running:
    pod = work["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = container_env(container, objects)
    mount_volumes(pod, container, objects, root)
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    return run_container(name, container["args"], env, root, nats_url, mounts)


def all_ready(started: list[Running]) -> dict[str, str]:
    try:
        return {r.name: r.ready() for r in started}
    finally:
        for r in started:
            r.stop()


# -- fleet keys deploy ------------------------------------------------------------------


def test_keys_deploy_makes_each_signers_seed_once_and_the_table_every_service_reads(
    tmp_path: Path,
) -> None:
    keys = make_keys(tmp_path)
    public = {n: Signer(read_seed(keys / f"{n}.nk")).public_key for n in (*SIGNERS, "operator")}
    table = tomllib.loads((keys / "signing.toml").read_text())["signing"]
    assert {n: table[f"{n}_key"] for n in SIGNERS} == {n: public[n] for n in SIGNERS}
    assert table["operators"] == {public["operator"]: "alice"}
    seeds = dict(line.split("=", 1) for line in (keys / "seeds.env").read_text().splitlines())
    assert seeds == {
        f"{n.upper()}_SIGNING_SEED": read_seed(keys / f"{n}.nk").decode() for n in SIGNERS
    }
    for secret in [keys / "seeds.env", *(keys / f"{n}.nk" for n in public)]:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret.name
    again = fleet("keys", "deploy", "signing", cwd=tmp_path)
    assert again.returncode == 0 and "made: none" in again.stderr
    printed = again.stdout + again.stderr
    assert not any(seed in printed for seed in seeds.values()), "a seed was printed"
    # Run again, the keys stay: what the streams hold was signed with them.
    assert (
        tomllib.loads((keys / "signing.toml").read_text())["signing"]["costguard_key"]
        == (public["costguard"])
    )


def test_keys_deploy_refuses_a_bad_operator_name_and_writes_nothing(tmp_path: Path) -> None:
    done = fleet("keys", "deploy", "signing", "--operator", "a b", cwd=tmp_path)
    assert done.returncode == 1 and "--operator 'a b'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "signing").exists()


# -- Kubernetes ---------------------------------------------------------------------------


def kubectl_secret(name: str, **files: Path) -> tuple[str, dict[str, str]]:
    """What `kubectl create secret generic NAME --from-file=KEY=FILE...` stores."""
    return name, {key: path.read_text() for key, path in files.items()}


def cluster_as_documented(where: Path) -> Objects:
    """docs/deploy.md's Kubernetes steps: identities, signing keys and their public keys
    in fleet.toml, every Secret it creates (the API keys left out: they are optional)."""
    toml = where / "fleet.toml"
    shutil.copy(DEPLOY / "k8s" / "fleet.toml", toml)
    done = fleet("init", "--identities-only", "--creds", "creds", "--config", str(toml), cwd=where)
    assert done.returncode == 0, done.stdout + done.stderr
    keys = make_keys(where)
    with toml.open("a") as config:  # cat signing/signing.toml >> deploy/k8s/fleet.toml
        config.write((keys / "signing.toml").read_text())
    creds = where / "creds"
    made = [
        kubectl_secret(f"fleet-nats-{s}", seed=creds / f"{s}.nk") for s in (*ORDER, "admin")
    ] + [kubectl_secret(f"fleet-signing-{s}", seed=keys / f"{s}.nk") for s in SIGNERS]
    made.append(kubectl_secret("nats-auth", **{"auth.conf": creds / "auth.conf"}))
    objects = Objects(secrets=dict(made))
    for doc in manifests():
        if doc["kind"] == "ConfigMap":
            objects.configmaps[doc["metadata"]["name"]] = dict(doc["data"])
    objects.configmaps["fleet-config"]["fleet.toml"] = toml.read_text()
    return objects


def fleet_workloads() -> dict[str, dict[str, Any]]:
    kinds = ("Job", "Deployment", "StatefulSet")
    return {
        d["metadata"]["name"]: d
        for d in manifests()
        if d["kind"] in kinds and d["metadata"]["name"].startswith("fleet-")
    }


def test_every_kubernetes_workload_reaches_ready_with_the_documented_secrets(
    tmp_path: Path,
) -> None:
    objects = cluster_as_documented(tmp_path)
    nats, url = start_nats(tmp_path / "nats", auth=objects.secrets["nats-auth"]["auth.conf"])
    try:
        work = fleet_workloads()
        init = run_pod("fleet-init", work.pop("fleet-init"), objects, tmp_path / "init", url)
        assert init.proc.wait(120) == 0, init.log.read_text()
        started = [run_pod(n, w, objects, tmp_path / n, url) for n, w in work.items()]
        assert all_ready(started) == {f"fleet-{n}": "ready" for n in ORDER}
    finally:
        stop_nats(nats)


def test_a_signer_pod_does_not_start_without_its_own_signing_secret(tmp_path: Path) -> None:
    objects = cluster_as_documented(tmp_path)
    work = fleet_workloads()
    for name in SIGNERS:
        pod = work[f"fleet-{name}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        mine = objects.secrets.pop(f"fleet-signing-{name}")
        with pytest.raises(LookupError, match=f"fleet-signing-{name}"):
            mount_volumes(pod, container, objects, tmp_path / name)
        objects.secrets[f"fleet-signing-{name}"] = mine
    for name, w in work.items():
        text = yaml.safe_dump(w)
        others = [s for s in SIGNERS if f"fleet-{s}" != name]
        assert not any(f"fleet-signing-{s}" in text for s in others), (
            f"{name} mounts another's seed"
        )


# -- compose --------------------------------------------------------------------------------


def dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` from deploy/.env."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or m[2] or "", str(value))


def test_every_compose_service_reaches_ready_with_the_documented_keys(
    tmp_path: Path, nats_url: str
) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / "secrets.env.example", deploy / "secrets.env")
    keys = make_keys(tmp_path)
    with (deploy / "fleet.example.toml").open("a") as config:
        config.write((keys / "signing.toml").read_text())
    shutil.copy(keys / "seeds.env", deploy / ".env")
    dot = dotenv(deploy / ".env")
    services = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]
    started = []
    for name in ORDER:
        svc, root = services[name], tmp_path / name
        env = {k: interpolate(v, dot) for k, v in svc["environment"].items()}
        for f in svc["env_file"]:
            env.update(dotenv(deploy / f))
        for volume in svc["volumes"]:
            source, target = volume.split(":")[:2]
            (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            if source.startswith("./"):
                shutil.copy(deploy / source, root / target.lstrip("/"))
        seeds = {k for k, v in env.items() if v.startswith("SU")}
        assert seeds <= {"FLEET_SIGNING__SEED"}, f"{name} gets another's seed"
        started.append(run_container(name, svc["command"], env, root, nats_url, ["/etc/fleet"]))
    assert all_ready(started) == dict.fromkeys(ORDER, "ready")
