"""`unless_stopped`: work a stop would leave hanging ends with the stop."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.background import unless_stopped


async def test_work_that_finishes_first_is_done_and_its_error_raised() -> None:
    stopping = asyncio.Event()
    assert await unless_stopped(asyncio.sleep(0), stopping) is True

    async def fails() -> None:
        raise ValueError("flush failed")

    with pytest.raises(ValueError, match="flush failed"):
        await unless_stopped(fails(), stopping)


async def test_a_stop_ends_work_that_would_hang_and_cancels_it() -> None:
    # A flush whose connection the stop closed never hears its PONG.
    stopping, never = asyncio.Event(), asyncio.Event()
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(unless_stopped(hangs(), stopping))
    await asyncio.sleep(0)
    assert not waiting.done()
    stopping.set()
    assert await asyncio.wait_for(waiting, 5) is False
    assert cancelled.is_set()
