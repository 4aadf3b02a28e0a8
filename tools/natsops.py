"""NATS operations the CLI shares: connect from the CLI's options, gather replies."""

from __future__ import annotations

import json
from typing import Any

import nats
from nats.aio.client import Client

from services.kit.config import resolve_nats_url
from tools.secure.setup import cli_identity


def identity() -> dict[str, Any]:
    """`nats.connect` options for who the CLI is: FLEET_NATS__NKEYS_SEED, else the operator
    of a `fleet up --secure` in this directory, else nobody (an open server). Every verb
    and `fleet mcp` connect with them: a secured server refuses a connection without."""
    seed, inbox = cli_identity() or ("", "_INBOX")
    return {"nkeys_seed": seed or None, "inbox_prefix": inbox}


async def cli_connect(url: str | None, name: str = "fleet-cli") -> Client:
    """Connect for a CLI verb, with a short timeout and a message that says what to do."""
    target = resolve_nats_url(url)

    async def quiet(_exc: Exception) -> None:
        """No traceback per failed attempt: the SystemExit below says it once."""

    try:
        # max_reconnect_attempts=0 would make nats-py retry an absent server forever;
        # 1 means: one more try, shortly after the first, then give up.
        return await nats.connect(
            target,
            name=name,
            connect_timeout=2,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            allow_reconnect=False,
            error_cb=quiet,
            **identity(),
        )
    except Exception as exc:
        raise SystemExit(
            f"fleet: cannot reach NATS at {target} ({exc or type(exc).__name__}). "
            "Start it with `fleet up`, or pass --nats URL / set FLEET_NATS_URL."
        ) from None


async def ask_json(nc: Client, subject: str, body: Any = None, timeout_s: float = 2.0) -> Any:
    """One request/reply with JSON; None when nobody answers in time."""
    data = json.dumps(body if body is not None else {}).encode()
    try:
        msg = await nc.request(subject, data, timeout=timeout_s)
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    try:
        return json.loads(msg.data)
    except ValueError:
        return None


async def api_call(
    nc: Client, op: str, body: dict[str, Any], verb: str, timeout_s: float = 10.0
) -> Any:
    """A `fleet.api.<op>` answer for CLI verb `verb`; SystemExit with what to do when the
    gateway is silent or answers with an error."""
    try:
        reply = await nc.request(f"fleet.api.{op}", json.dumps(body).encode(), timeout=timeout_s)
    except Exception as exc:
        raise SystemExit(
            f"fleet {verb}: fleet.api.{op} did not answer ({type(exc).__name__}); "
            "is the gateway running (`fleet up`)?"
        ) from None
    answer = json.loads(reply.data)
    if isinstance(answer, dict) and "error" in answer:
        raise SystemExit(f"fleet {verb}: {answer['error'].get('message')}")
    return answer
