"""Closed-loop request/reply client for `fleet bench runner` (a separate process).

    python -m tools.bench.rrclient URL raw|a2a CONCURRENCY SECONDS

`raw`: nats-py request/reply against `tools.bench.echo` on `bench.echo`.
`a2a`: blocking SendMessage to agents.assistant (each worker its own tenant and
session). Prints one JSON line: requests, errors, seconds, rps, p50_ms, p99_ms.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import msgspec
import nats

from contracts import subjects
from contracts.a2a import A2A_VERSION, HEADER_TENANT, HEADER_VERSION

ECHO_SUBJECT = "bench.echo"


async def main(url: str, mode: str, concurrency: int, seconds: float) -> None:
    nc = await nats.connect(url, name=f"bench-rr-{mode}", pending_size=256 * 1024 * 1024)
    enc = msgspec.json.Encoder()
    subject = (
        ECHO_SUBJECT if mode == "raw" else subjects.a2a_rpc(subjects.hosted_agent("assistant"))
    )
    lat: list[float] = []
    errors = 0
    run = uuid.uuid4().hex[:6]

    async def worker(w: int) -> None:
        nonlocal errors
        headers = {HEADER_VERSION: A2A_VERSION, HEADER_TENANT: f"bench-{run}-{w}"}
        n = 0
        while time.monotonic() < end:
            n += 1
            body = enc.encode(
                {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "SendMessage",
                    "params": {
                        "message": {
                            "messageId": f"{run}-{w}-{n}",
                            "role": "ROLE_USER",
                            "parts": [{"text": "ping"}],
                            "contextId": f"bench-{run}-{w}-{n % 4}",
                        },
                        "configuration": {"historyLength": 0},
                    },
                }
            )
            t0 = time.perf_counter()
            try:
                reply = await nc.request(subject, body, timeout=10, headers=headers)
                if mode == "a2a" and b"TASK_STATE_COMPLETED" not in reply.data:
                    errors += 1
                    continue
            except Exception:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)

    start = time.monotonic()
    end = start + seconds
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - start
    await nc.close()
    lat.sort()
    out = {
        "mode": mode,
        "requests": len(lat),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3) if lat else None,
    }
    print(msgspec.json.encode(out).decode(), flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
