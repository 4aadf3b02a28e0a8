"""Fixtures: a real nats-server per session, fresh JetStream state per test, and
a guard that fails any test leaving asyncio tasks behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from tools.natsserver import start_nats, stop_nats

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRACES = SHARED / "data" / "traces"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--unit-only",
        action="store_true",
        help="run only tests that need no nats-server (the mutation runs' test set)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --unit-only, deselect every test that uses the nats-server fixture."""
    if not config.getoption("--unit-only"):
        return
    keep = [i for i in items if "nats_server" not in getattr(i, "fixturenames", ())]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real nats-server with JetStream in a temp dir, on a free port."""
    data = tmp_path_factory.mktemp("nats")
    proc, url = start_nats(data, log_file=data / "nats.log")
    yield url
    stop_nats(proc)


async def _wipe_jetstream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest.fixture
async def nats_url(nats_server: str) -> AsyncIterator[str]:
    """The session's server, with every stream (and so every consumer) deleted first."""
    await _wipe_jetstream(nats_server)
    yield nats_server


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (kopf's _no_asyncio_pending_tasks)."""
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)  # let done-callbacks of just-cancelled tasks run
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()]
    if left:
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        pytest.fail(f"test left {len(left)} asyncio task(s) running: {left[:3]}")
