"""`fleet up`: NATS with JetStream and every service, supervised, in one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from services.kit.bus import gather_replies
from services.kit.errors import ConfigError
from services.provisioner.service import stop_sim_units
from tools.configcheck import CONFIG_ERROR_EXIT, exit_on_error
from tools.natsops import cli_connect
from tools.natsserver import free_port, reload_auth, start_nats, stop_nats
from tools.registry import EMBEDDED, available
from tools.secure.admin import init_server, summary
from tools.secure.identities import ADMIN, WORKER
from tools.secure.keeper import AgentKeeper
from tools.secure.setup import (
    Secured,
    identity_env,
    plan_from_config,
    unit_env,
    write_secured,
)
from tools.signingkeys import configured, fleet_env
from tools.supervisor import Supervisor, _die_with_parent

DEMOS = {"gpu": "fleet.toml", "agents": "agents.toml"}
READY_DEADLINE_S = 60.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="start NATS and every service, supervised (the embedded default)",
        description="Start a NATS server with JetStream (data under --data) and every service "
        "as a supervised child process: restarted on crash, log lines prefixed with the "
        "service's name. Ctrl-C or SIGTERM stops everything and leaves no process behind. "
        "Without a fleet.toml the demo configuration runs: a simulated H100 marketplace "
        "with a daily load curve, bursts and a budget that the bursts reach.",
        epilog="examples:\n  fleet up\n  fleet up --config fleet.toml --data /var/lib/fleet\n"
        "  fleet up --nats nats://nats.internal:4222\n  fleet up --demo agents\n"
        "  fleet up --secure",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="fleet.toml (default: ./fleet.toml, else the built-in demo)")
    p.add_argument("--nats", help="use this NATS server instead of starting one")
    p.add_argument(
        "--data",
        default=".fleet",
        help="where NATS keeps its streams and each service its store (default: .fleet); "
        "what the CLI in this directory reads (nats.url, keys, --secure's identities) stays "
        "in ./.fleet",
    )
    p.add_argument("--port", type=int, default=0, help="NATS port (default: 4222 if free)")
    p.add_argument("--demo", choices=sorted(DEMOS), default="gpu", help="built-in demo config")
    p.add_argument(
        "--secure",
        action="store_true",
        help="generated identities (.fleet/creds/), least-privilege permissions, and "
        "services that only bind to what `fleet init` created",
    )
    p.add_argument(
        "--only", nargs="+", metavar="SERVICE", help="start only these services (default: all)"
    )
    p.set_defaults(func=run)


def demo_config(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "demo" / DEMOS[name]


def pick_config(args: argparse.Namespace) -> Path | None:
    """The fleet.toml to run, or None (told on stderr) when the one named is missing."""
    named = args.config or os.environ.get("FLEET_CONFIG")
    if named:
        if not Path(named).is_file():
            print(f"fleet up: config file {named} does not exist", file=sys.stderr)
            return None
        return Path(named).resolve()
    if Path("fleet.toml").is_file() and args.demo == "gpu":
        return Path("fleet.toml").resolve()
    return demo_config(args.demo)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False, highlight=False)
    config = pick_config(args)
    if config is None:
        return CONFIG_ERROR_EXIT
    bad = exit_on_error("fleet up", str(config))  # before anything starts or is written
    if bad is not None:
        return bad
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    state = Path(".fleet")
    state.mkdir(exist_ok=True)
    pid_file, url_file = state / "up.pid", state / "nats.url"
    if pid_file.is_file():
        with contextlib.suppress(ValueError):
            other = int(pid_file.read_text().strip() or 0)
            if other and other != os.getpid() and _pid_alive(other):
                console.print(
                    f"[red]fleet up: another `fleet up` (pid {other}) runs from this directory; "
                    "stop it first, or run from another directory[/]"
                )
                return 1
    names = [n for n in available(EMBEDDED) if not args.only or n in args.only]
    if not names:
        console.print("[red]fleet up: no services to start[/]")
        return 1
    secured = None
    if args.secure:
        if args.nats:
            console.print(
                "[red]fleet up: --secure runs its own NATS server with the identities it "
                "writes; for an existing server use `fleet init --identities` and its auth.conf[/]"
            )
            return 1
        try:
            secured = write_secured(str(config), state / "creds")
        except (ConfigError, ValueError) as exc:
            console.print(f"[red]fleet up: {exc}[/]")
            return CONFIG_ERROR_EXIT
    nats_proc = None
    if args.nats:
        url = args.nats
        asyncio.run(_reachable(url))  # one line and exit 1 when it is not, before any child
    else:
        port = args.port or (4222 if _port_free(4222) else free_port())
        try:
            nats_proc, url = start_nats(
                data / "nats",
                port=port,
                log_file=data / "nats.log",
                preexec_fn=_die_with_parent,
                auth=secured.auth_file.read_text() if secured else "",
            )
        except (OSError, RuntimeError, TimeoutError) as exc:
            console.print(f"[red]fleet up: NATS did not start: {exc} (see {data}/nats.log)[/]")
            return 1
    try:
        plan, _ = plan_from_config(str(config))
        seed = secured.identities[ADMIN].seed_file if secured else None
        console.print(summary(asyncio.run(init_server(url, plan, seed))), soft_wrap=True)
    except Exception as exc:
        if secured is not None:  # its services may not create what is missing
            if nats_proc is not None:
                stop_nats(nats_proc)
            console.print(f"[red]fleet up: fleet init failed: {exc or type(exc).__name__}[/]")
            return 1
        console.print(f"[yellow]fleet up: fleet init failed ({exc}); services create them[/]")
    pid_file.write_text(str(os.getpid()))
    url_file.write_text(url + "\n")
    console.print(
        f"[bold]fleet up[/]: NATS {url}  config {config}  data {data}  services {', '.join(names)}"
    )
    try:
        return asyncio.run(_supervise(console, names, url, config, data, nats_proc, secured))
    finally:
        if nats_proc is not None:
            stop_nats(nats_proc)
        for f in (pid_file, url_file):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        console.print("[bold]fleet up[/]: stopped; no process left behind")


async def _reachable(url: str) -> None:
    """Raise SystemExit with cli_connect's one-line reason when nobody serves `url`."""
    nc = await cli_connect(url, "fleet-up")
    await nc.close()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _supervise(
    console: Console,
    names: list[str],
    url: str,
    config: Path,
    data: Path,
    nats_proc: object,
    secured: Secured | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sup = Supervisor(console, stop)
    base_env = dict(os.environ)
    base_env.update(
        FLEET_NATS_URL=url,
        FLEET_CONFIG=str(config),
        FLEET_STORE__DIR=str(data),
        PYTHONUNBUFFERED="1",
    )
    own_keys: dict[str, dict[str, str]] = {}
    if not configured(str(config)):  # the run's signing keys, under .fleet/keys/
        common, own_keys = fleet_env()
        base_env.update(common)
    for name in names:
        # Port 0: each service binds a free port itself and says which in its `ready`
        # line and its nats.micro metadata. A port picked here and handed over was free
        # only until the next bind: two services, or a unit, could be given the same one.
        env = dict(base_env, FLEET_HTTP__PORT="0", **own_keys.get(name, {}))
        if secured is not None:  # each service as its own identity
            env.update(identity_env(secured.identities[name]))
            if name == "provisioner":
                ids = secured.identities
                env.update(unit_env(str(config), ids["runner"], ids[WORKER]))
        sup.add(name, [sys.executable, "-m", "tools", "run", name], env)
    keeper = None
    if secured is not None and isinstance(nats_proc, subprocess.Popen):
        keeper = await _keep_agents(console, url, config, data, nats_proc, secured)
    started = time.monotonic()
    sup.start()
    ready_task = asyncio.create_task(_report_ready(console, names, url, started))
    code = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if nats_proc is not None and getattr(nats_proc, "poll", lambda: 0)() is not None:
                console.print("[red]fleet up: the NATS server exited; stopping[/]")
                code = 1
                break
    finally:
        ready_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready_task
        if keeper is not None:
            await keeper.close()
        console.print("[bold]fleet up[/]: stopping services…")
        await sup.shutdown()
        # The sim units report from a process of their own that outlives provisioner
        # restarts (services/provisioner/providers/simhost.py); it goes with the rest.
        await asyncio.to_thread(stop_sim_units, data)
    if sup.fatal is not None:
        name, error = sup.fatal
        print(f"fleet up: {name} cannot start: {error}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    return code


async def _keep_agents(
    console: Console,
    url: str,
    config: Path,
    data: Path,
    nats_proc: subprocess.Popen[bytes],
    secured: Secured,
) -> AgentKeeper | None:
    """The admin's answers for hosted agents made at runtime (tools/secure/keeper.py),
    having first granted those an earlier run made; None (and a warning) if it fails."""
    plan, deployment = plan_from_config(str(config))
    keeper = AgentKeeper(
        url,
        secured.identities,
        plan,
        deployment,
        apply=lambda auth: reload_auth(nats_proc, data / "nats", auth),
        auth_file=str(secured.auth_file),
    )
    try:
        added = await keeper.start()
    except Exception as exc:
        await keeper.close()
        console.print(
            f"[yellow]fleet up: hosted agents made at runtime cannot be served: "
            f"{exc or type(exc).__name__}[/]"
        )
        return None
    if added:
        console.print(f"fleet up: agents made at runtime, granted again: {', '.join(added)}")
    return keeper


async def _report_ready(console: Console, names: list[str], url: str, started: float) -> None:
    nc = await cli_connect(url, "fleet-up")
    try:
        seen: set[str] = set()
        while time.monotonic() - started < READY_DEADLINE_S:
            for reply in await gather_replies(nc, "$SRV.PING", wait_s=0.3):
                seen.add(str(reply.get("name", "")))
            if set(names) <= seen:
                console.print(
                    f"[bold green]fleet up: {len(names)} services ready in "
                    f"{time.monotonic() - started:.1f} s[/] — in another terminal try "
                    "`fleet status` and `fleet tail`; Ctrl-C stops everything"
                )
                return
            await asyncio.sleep(0.5)
        missing = sorted(set(names) - seen)
        console.print(f"[red]fleet up: not ready after {READY_DEADLINE_S:.0f} s: {missing}[/]")
    finally:
        await nc.close()
