"""A service as a process: `fleet run <service>` loads settings, sets up logging and
tracing, serves until SIGTERM/SIGINT, and exits with a code a supervisor acts on.

Exit codes: 0 after a clean stop; 1 when NATS cannot be reached; 2 for a
configuration error (restarting cannot help); LEASE_LOST_EXIT when a singleton
lost its lease (restart it, as a standby).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Protocol

from services.kit.config import KitSettings, load_settings
from services.kit.errors import ConfigError, NotInitialized
from services.kit.logs import setup_logging
from services.kit.tracing import setup_tracing

log = logging.getLogger("fleet.service")

CONFIG_ERROR_EXIT = 2
LEASE_LOST_EXIT = 3
"""Exit code of `fleet run` when a singleton lost its lease (restart it as a standby)."""


class Servable(Protocol):
    """What a process serves: the Service's lifecycle."""

    @property
    def lease_lost(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def request_stop(self) -> None: ...

    async def stop_asked(self) -> None: ...


async def serve(service: Servable) -> None:
    """Start, run until SIGTERM/SIGINT (or a stop request), then stop gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    starting = asyncio.ensure_future(service.start())
    stop_asked = asyncio.ensure_future(service.stop_asked())
    try:
        await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a failed start raises here
            await stop_asked
        else:  # asked to stop while still connecting or waiting for the lease
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    finally:
        stop_asked.cancel()
        await service.stop()


def run_main(
    name: str,
    settings_type: type[KitSettings],
    build: Callable[[KitSettings], Servable],
    config: str | None = None,
) -> int:
    """Load settings, set up logging and tracing, serve `build(settings)`; the exit code."""
    try:
        settings = load_settings(settings_type, config)
    except ConfigError as exc:
        print(f"fleet run {name}: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    # A process inherits its parent thread's blocked-signal mask across exec; a
    # service spawned from a thread that blocks SIGTERM would never hear it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    setup_logging(name, settings.log.level, settings.log.json)
    setup_tracing(name, settings.tracing.exporter, settings.tracing.sample_ratio)
    service = build(settings)
    try:
        asyncio.run(serve(service))
    except ConnectionError as exc:
        log.error(str(exc))
        return 1
    except NotInitialized as exc:  # restarting cannot help: the admin must run `fleet init`
        log.error(str(exc))
        return CONFIG_ERROR_EXIT
    return LEASE_LOST_EXIT if service.lease_lost else 0
