"""Send one message to an A2A agent and print the task as it streams.

Human view: status lines on stderr (`... called get_stats`), the answer's text on
stdout as it arrives, then the final state. `--json` prints every StreamResponse
as one JSON line, and the final task last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

import msgspec

from contracts.a2a import TERMINAL_STATES, StreamResponse, TaskState
from services.a2a.client import A2AClient, A2AError
from tools.natsops import cli_connect
from tools.secure.setup import cli_identity_name


def _status_line(item: StreamResponse) -> str | None:
    update = item.status_update
    if update is None or update.status.message is None:
        return None
    parts = update.status.message.parts
    text = " ".join(p.text for p in parts if p.text)
    return f"[{update.status.state.name.lower()}] {text}" if text else None


async def ask(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream the answer; exit 0 when the task completed, 1 otherwise."""
    nc = await cli_connect(args.nats)
    tenant = args.tenant or cli_identity_name()
    client = A2AClient(nc, args.agent, tenant=tenant, timeout_s=args.timeout)
    state: TaskState | None = None
    answer_printed = False
    final_text = ""
    try:
        async for item in client.stream(args.text):
            if args.json:
                out.write(json.dumps(msgspec.to_builtins(item)) + "\n")
                out.flush()
            if item.task is not None:
                state = item.task.status.state
                continue
            if item.artifact_update is not None and not args.json:
                for part in item.artifact_update.artifact.parts:
                    if part.text:
                        out.write(part.text)
                        out.flush()
                        answer_printed = True
            if item.status_update is not None:
                state = item.status_update.status.state
                line = _status_line(item)
                if state in TERMINAL_STATES or state == TaskState.INPUT_REQUIRED:
                    final_text = line or ""
                elif line and not args.json:
                    err.write(line + "\n")
    except A2AError as exc:
        err.write(f"fleet ask: {exc}\n")
        return 1
    except TimeoutError:
        err.write(f"fleet ask: no answer from agent {args.agent!r} within {args.timeout:g} s\n")
        return 1
    finally:
        await nc.close()
    if not args.json:
        if answer_printed:
            out.write("\n")
        if state != TaskState.COMPLETED or not answer_printed:
            (out if state == TaskState.COMPLETED else err).write(final_text + "\n")
    return 0 if state == TaskState.COMPLETED else 1


def run_ask(args: argparse.Namespace) -> int:
    """The verb's handler."""
    return asyncio.run(ask(args))
