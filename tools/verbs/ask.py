"""`fleet ask "TEXT"`: an A2A message to the brain; prints the answer as it streams."""

from __future__ import annotations

import argparse

from contracts.subjects import BRAIN_AGENT
from tools.ask.flow import run_ask


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ask",
        help="ask the brain (A2A SendStreamingMessage); prints the answer as it streams",
        description="Send TEXT to the brain (A2A agent `fleet`, or --agent NAME) over NATS and "
        "print the answer as it streams; progress lines go to stderr. Without "
        "ANTHROPIC_API_KEY the brain answers with its rule policy and says so. Exit code 0 "
        "when the task completed.",
        epilog='examples:\n  fleet ask "where should a 70B model with 40 GB VRAM run?"\n'
        '  fleet ask "how utilized are the pools?" --json\n'
        '  fleet ask --agent agents.assistant "hello"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("text", help="the question or instruction")
    p.add_argument("--agent", default=BRAIN_AGENT, help="A2A agent name (default: fleet)")
    p.add_argument(
        "--tenant",
        default=None,
        help="call as this tenant (a2a.<agent>.rpc.<tenant>); default: the identity connected as",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for events")
    p.add_argument("--json", action="store_true", help="one JSON StreamResponse per line")
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run_ask)
