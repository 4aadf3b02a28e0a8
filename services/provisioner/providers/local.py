"""`local`: units as real processes on this machine.

Each unit is one process started from `[providers.local] command` (by default
the built-in worker, services/provisioner/worker.py; the hosted-agent runner
plugs in here) in a session of its own, so destroying it kills its whole
process group. On Linux each child also gets PR_SET_PDEATHSIG: if the
provisioner dies, even by SIGKILL, the kernel sends its workers SIGTERM.
PIDs (with their start times, against PID reuse) are kept in
`<store.dir>/local-<name>.json` so a restarted provisioner can adopt live
workers or forget dead ones. close() kills every worker: none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from contracts.offers import Offer, OfferFilter
from contracts.subjects import agent_of_pool
from services.provisioner.inventory import parse_key
from services.provisioner.placement import rejection
from services.provisioner.providers.base import CapacityError, NotFound, Permanent, ProviderUnit
from services.provisioner.providers.settings import ProviderSettings

DEFAULT_COMMAND = (
    "{python}",
    "-m",
    "services.provisioner.worker",
    "--pool",
    "{pool}",
    "--unit",
    "{unit}",
    "--nats",
    "{nats}",
    "--provider",
    "{provider}",
    "--capacity",
    "{capacity}",
    "--ready-file",
    "{ready_file}",
)
RUNNER_COMMAND = (
    "env",
    "FLEET_RUNNER__UNIT={unit}",
    "FLEET_RUNNER__POOL={pool}",
    "FLEET_RUNNER__PROVIDER={provider}",
    "FLEET_RUNNER__READY_FILE={ready_file}",
    "{python}",
    "-m",
    "tools",
    "run",
    "runner",
    "--nats",
    "{nats}",
)
"""A hosted-agent runner as the unit: in a pool `agents-<name>` it is that agent's own."""
PR_SET_PDEATHSIG = 1


_NOT_INHERITED = frozenset(
    {"FLEET_HTTP__PORT", "FLEET_HTTP__HOST", "FLEET_SIGNING__SEED", "FLEET_SIGNING__SEED_FILE"}
)
"""Variables of the provisioner's own service that a unit must not share (its port, and
its signing key: a unit that held it could sign unit events as the provisioner)."""


class LocalSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`[providers.local]` (or any `[providers.<name>] kind = "local"`)."""

    command: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_COMMAND))
    """Argv of one unit; `{python} {pool} {unit} {nats} {provider} {capacity} {ready_file}`
    are filled in. The process should touch {ready_file} once it serves."""
    agent_command: list[str] = msgspec.field(default_factory=lambda: list(RUNNER_COMMAND))
    """Argv of a unit of a hosted agent's pool (`agents-<name>`), filled in likewise: by
    default `fleet run runner` as the unit, which serves that agent (its own runner,
    `[gateway] agent_runtime = "local"`). A process is not sized: the agent's cores and
    memory are for providers that make units to order."""
    max_units: int = 8
    """Most processes at once; more is a CapacityError (this machine has so many cores)."""
    gpu_model: str = "CPU"
    usd_per_hour: float = 0.0
    """What a local unit costs, for the cost-guard's ledger."""
    capacity: float = 1.0
    """Requests one process serves at once, passed as {capacity}."""
    stop_timeout_s: float = 3.0
    """Seconds a process gets after SIGTERM before its group is SIGKILLed."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra environment for the processes."""
    agent_env: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra environment for the hosted-agent runners only, over `env` (`fleet up
    --secure` connects them as the `runner` identity, the GPU workers as `worker`)."""


class LocalUnit(msgspec.Struct, kw_only=True):
    unit_id: str
    pid: int
    start_ticks: int
    label: str
    pool: str
    unit: str
    created_ts: float
    ready_file: str


class LocalProvider:
    """Processes on this machine; see the module docstring."""

    owns_processes = True
    """Its units die with the provisioner, so the service retires them on stop."""

    def __init__(self, name: str, settings: LocalSettings, state_dir: Path, nats_url: str) -> None:
        self.name = name
        self.settings = settings
        self.nats_url = nats_url
        self.available = True
        self.dir = Path(state_dir) / f"local-{name}"
        self.state_file = Path(state_dir) / f"local-{name}.json"
        self._units: dict[str, LocalUnit] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._load()

    async def offers(self, flt: OfferFilter) -> list[Offer]:
        """One offer: a process here, as many as `max_units` allows."""
        offer = Offer(
            provider=self.name,
            offer_id=f"{self.name}-process",
            gpu_model=self.settings.gpu_model,
            vendor="other",
            tier="cpu",
            usd_per_hour=self.settings.usd_per_hour,
            region="localhost",
            available=self._free(),
        )
        return [offer] if rejection(offer, flt) is None else []

    async def create(self, offer: Offer, count: int, idempotency_key: str) -> list[ProviderUnit]:
        """Start `count` processes labelled with the key; live ones with the key count."""
        have = [u for u in self._units.values() if u.label == idempotency_key and self._alive(u)]
        need = count - len(have)
        if need > 0 and self._free() <= 0:
            raise CapacityError(self.name, f"already running max_units={self.settings.max_units}")
        pool, unit = parse_key(idempotency_key) or ("local", "")
        for i in range(min(need, self._free())):
            name = unit if (unit and count == 1) else f"{unit or 'w'}-{len(self._units) + i}"
            have.append(self._spawn(pool, name, idempotency_key))
        self._save()
        return [self._view(u) for u in have]

    async def list(self) -> list[ProviderUnit]:
        """Our processes; dead ones are reported failed once, then forgotten."""
        out = [self._view(u) for u in self._units.values()]
        dead = [u.unit_id for u in self._units.values() if not self._alive(u)]
        for uid in dead:
            self._forget(uid)
        if dead:
            self._save()
        return out

    async def destroy(self, unit_id: str) -> None:
        """Kill the unit's process group; NotFound when it is not ours or already gone."""
        unit = self._units.get(unit_id)
        if unit is None:
            raise NotFound(self.name, f"no local unit {unit_id}")
        await self._kill(unit)
        self._forget(unit_id)
        self._save()

    async def close(self) -> None:
        """Kill every process we started: nothing outlives the provisioner."""
        for uid in list(self._units):
            await self._kill(self._units[uid])
            self._forget(uid)
        self._save()

    def pids(self) -> dict[str, int]:
        """unit id -> pid of every process we track (for operators and tests)."""
        return {uid: u.pid for uid, u in self._units.items()}

    # -- processes ---------------------------------------------------------------
    def _spawn(self, pool: str, unit: str, label: str) -> LocalUnit:
        self.dir.mkdir(parents=True, exist_ok=True)
        ready = self.dir / f"{unit}.ready"
        ready.unlink(missing_ok=True)
        values = {
            "python": sys.executable,
            "pool": pool,
            "unit": unit,
            "nats": self.nats_url,
            "provider": self.name,
            "capacity": f"{self.settings.capacity:g}",
            "ready_file": str(ready),
        }
        command = self.settings.agent_command if agent_of_pool(pool) else self.settings.command
        try:
            argv = [part.format(**values) for part in command]
        except (KeyError, IndexError) as exc:
            raise Permanent(self.name, f"[providers.{self.name}] command: unknown {exc}") from None
        # A unit is its own service: it must not inherit this process's HTTP port or
        # store (fleet up gives each service its own), or it cannot bind and dies.
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(FLEET_HTTP__PORT="0", **self.settings.env)
        if agent_of_pool(pool):
            env.update(self.settings.agent_env)
        log = open(self.dir / f"{unit}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise Permanent(self.name, f"cannot start {argv[0]}: {exc.strerror}") from None
        finally:
            log.close()
        self._children[proc.pid] = proc
        u = LocalUnit(
            unit_id=f"{self.name}-{unit}",
            pid=proc.pid,
            start_ticks=_start_ticks(proc.pid),
            label=label,
            pool=pool,
            unit=unit,
            created_ts=time.time(),
            ready_file=str(ready),
        )
        self._units[u.unit_id] = u
        return u

    def _alive(self, u: LocalUnit) -> bool:
        child = self._children.get(u.pid)
        if child is not None:
            return child.poll() is None
        return _start_ticks(u.pid) == u.start_ticks and u.start_ticks > 0

    async def _kill(self, u: LocalUnit) -> None:
        if not self._alive(u):
            return
        _signal_group(u.pid, signal.SIGTERM)
        if not await self._gone(u, self.settings.stop_timeout_s):
            _signal_group(u.pid, signal.SIGKILL)
            await self._gone(u, 2.0)

    async def _gone(self, u: LocalUnit, within_s: float) -> bool:
        """Wait up to `within_s` for the process to exit (and be reaped)."""
        for _ in range(max(int(within_s / 0.05), 1)):
            if not self._alive(u):
                return True
            await asyncio.sleep(0.05)
        return not self._alive(u)

    def _forget(self, unit_id: str) -> None:
        u = self._units.pop(unit_id, None)
        if u is not None:
            child = self._children.pop(u.pid, None)
            if child is not None:
                child.poll()
            Path(u.ready_file).unlink(missing_ok=True)

    def _free(self) -> int:
        return max(self.settings.max_units - len(self._units), 0)

    def _view(self, u: LocalUnit) -> ProviderUnit:
        detail = ""
        if not self._alive(u):
            status = "failed"
            detail = last_words(self.dir / f"{u.unit}.log")
        else:
            status = "ready" if Path(u.ready_file).exists() else "booting"
        return ProviderUnit(
            provider=self.name,
            unit_id=u.unit_id,
            status=status,  # type: ignore[arg-type]
            gpu_model=self.settings.gpu_model,
            usd_per_hour=self.settings.usd_per_hour,
            label=u.label,
            address=f"pid:{u.pid}",
            created_ts=u.created_ts,
            detail=detail,
        )

    def _load(self) -> None:
        if not self.state_file.is_file():
            return
        try:
            rows = msgspec.json.decode(self.state_file.read_bytes(), type=list[LocalUnit])
        except (OSError, msgspec.DecodeError):
            return
        self._units = {u.unit_id: u for u in rows if self._alive(u)}
        self._save()

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(list(self._units.values())))
        os.replace(tmp, self.state_file)


def last_words(log: Path, limit: int = 300) -> str:
    """The last line a unit's process wrote (why it ended, usually), at most `limit`
    characters; "" when it wrote nothing or the log is gone."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def _die_with_parent(parent: int) -> Any:
    """A preexec_fn: on Linux, SIGTERM the child when the provisioner dies."""

    def apply() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(Exception):
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return apply


def _start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return 0
        return 1  # no /proc (not Linux): alive, start time unknown
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":
        return 0
    return int(fields[19])


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def local_settings(name: str, section: Mapping[str, Any]) -> LocalSettings:
    """Settings of local instance `name` from its `[providers.<name>]` table."""
    values = {k: v for k, v in section.items() if k not in {"kind", "base_url", "api_key"}}
    if isinstance(values.get("command"), str):
        values["command"] = str(values["command"]).split()
    try:
        return msgspec.convert(values, LocalSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"[providers.{name}] {exc}") from None


def build(settings: ProviderSettings) -> LocalProvider:
    """The registry's entry point: local processes with default settings under `.fleet/`."""
    from services.kit.config import STATE_DIR, resolve_nats_url

    name = settings.name or "local"
    return LocalProvider(name, LocalSettings(), Path(STATE_DIR), resolve_nats_url())
