"""The cost ladder of `fleet bench runner`: one A2A request, one durable step at a time.

    python -m tools.bench.ladder URL READY_FILE STEP

A responder on `a2a.agents.assistant.rpc` that answers a blocking SendMessage
with a completed task, doing the runner's per-request steps up to STEP, each
with the runner's own parts (contracts, SessionStore, KvTaskStore):

    parse     decode and validate the JSON-RPC request, answer a completed task
    events    + the task's three events (working, artifact, completed) on
                `a2a.<agent>.tasks.<id>`, kept by the A2A_TASKS stream
    session   + read the session from its KV bucket (a new one is admitted against
                the tenant's quota and stored once)
    writes    + store the task and the session (acknowledged KV writes, together)

Measured next to raw request/reply, the ladder shows what each step costs on
this machine, and so where the full runner's ratio comes from.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg

from contracts import subjects
from contracts.a2a import (
    Artifact,
    JsonRpcResponse,
    Part,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    iso_now,
)
from contracts.streams import A2A_TASKS
from services.a2a.stores import KvTaskStore
from services.a2a.tasks import new_id
from services.kit.bus import ensure_streams
from services.runner.sessions import SessionStore, Turn

STEPS = ("parse", "events", "session", "writes")
AGENT = subjects.hosted_agent("assistant")
LADDER_AGENT = subjects.hosted_agent("ladder")  # buckets of its own, not the runner's


async def main(url: str, ready: str, step: str) -> None:
    level = STEPS.index(step)
    nc = await nats.connect(url, name=f"bench-ladder-{step}", pending_size=256 * 1024 * 1024)
    js = nc.jetstream()
    await ensure_streams(js, [A2A_TASKS])
    sessions = await SessionStore.open(js, LADDER_AGENT, idle_s=600, quota=1_000_000)
    tasks = await KvTaskStore.open(js, LADDER_AGENT)
    enc = msgspec.json.Encoder()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    seen: set[str] = set()

    async def handle(msg: Msg) -> None:
        body = msgspec.json.decode(msg.data)
        params = msgspec.convert(body["params"], SendMessageRequest)
        tenant = (msg.headers or {}).get("Fleet-Tenant", "public")
        task_id, context_id = new_id(), params.message.context_id or new_id()
        session = None
        if level >= STEPS.index("session"):
            session = await sessions.open_session(tenant, context_id)
            if level == STEPS.index("session") and context_id not in seen:
                seen.add(context_id)  # stored once, so later turns read an existing session
                await sessions.save(session)
        artifact = Artifact(artifact_id=new_id(), parts=[Part(text="pong")], name="answer")
        done = TaskStatus(state=TaskState.COMPLETED, timestamp=iso_now())
        task = Task(
            id=task_id,
            context_id=context_id,
            status=done,
            history=[params.message],
            artifacts=[artifact],
        )
        if level >= STEPS.index("events"):
            topic = subjects.a2a_task(AGENT, task_id)
            working = TaskStatus(state=TaskState.WORKING, timestamp=iso_now())
            for item in (
                StreamResponse(status_update=_status(task_id, context_id, working)),
                StreamResponse(
                    artifact_update=TaskArtifactUpdateEvent(
                        task_id=task_id, context_id=context_id, artifact=artifact
                    )
                ),
                StreamResponse(status_update=_status(task_id, context_id, done)),
            ):
                await nc.publish(topic, enc.encode(item))
        if session is not None and level >= STEPS.index("writes"):
            session.turns = [*session.turns, Turn(role="user", text="ping")][-40:]
            await asyncio.gather(tasks.put(task, tenant), sessions.save(session))
        if msg.reply:
            result = SendMessageResponse(task=task)
            await nc.publish(
                msg.reply, enc.encode(JsonRpcResponse(id=body.get("id"), result=result))
            )

    async def on_request(msg: Msg) -> None:
        job = loop.create_task(handle(msg))  # concurrent, as the runner's requests are
        pending.add(job)
        job.add_done_callback(pending.discard)

    await nc.subscribe(subjects.a2a_rpc(AGENT), queue="ladder", cb=on_request)
    await nc.flush()
    await asyncio.to_thread(Path(ready).touch)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


def _status(task_id: str, context_id: str, status: TaskStatus) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, status=status)


if __name__ == "__main__":
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
