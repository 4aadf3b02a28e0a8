"""The raw baseline responder of `fleet bench runner`: nats-py request/reply, echo.

python -m tools.bench.echo URL READY_FILE
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import nats
from nats.aio.msg import Msg

from tools.bench.rrclient import ECHO_SUBJECT


async def main(url: str, ready: str) -> None:
    nc = await nats.connect(url, name="bench-echo", pending_size=256 * 1024 * 1024)

    async def on(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(ECHO_SUBJECT, cb=on)
    await nc.flush()
    await asyncio.to_thread(Path(ready).touch)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


if __name__ == "__main__":
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1], sys.argv[2]))
