"""Whether a hosted agent's name is free, and whether a new agent is served, asked of
the agent's card subject (`a2a.agents.<name>.card`) the way any client would.

- A name something already answers as (an agent of `[runner] agents`, configured, not
  created) is taken: created again it would be listed and counted for its user while
  the configured agent kept answering (`name_free`).
- An agent the shared runners should serve is made only once one of them answers its
  card; a runner that cannot serve it (a Claude model without a key) answers the
  gateway's check (`HEADER_SERVE_CHECK`) with why, and the agent is undone with that
  reason (`served`).
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

from contracts import subjects
from contracts.a2a import HEADER_SERVE_CHECK
from contracts.base import UNDECODABLE
from services.kit.service import RequestError

ROUND_S = 0.5
"""How long one round of the check collects answers."""

ROUNDS = 3
"""Rounds of the same answer that settle a check: a name answered in each is taken (a
deleted agent's runners stop answering within one, a configured agent never does); an
agent refused in each, with no card, will not be served."""


class _Error(msgspec.Struct):
    message: str = ""


class _Answer(msgspec.Struct):
    """A card request's answer: a card (anything without `error`) or a runner's refusal."""

    error: _Error | None = None


_answer = msgspec.json.Decoder(_Answer)


async def card_answers(nc: Client, agent: str, *, check: bool) -> tuple[bool, list[str]]:
    """One round: (whether a card came, the refusals heard) within `ROUND_S`. Without
    `check` only serving runners answer, as to any client."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    refusals: list[str] = []
    try:
        headers = {HEADER_SERVE_CHECK: "1"} if check else None
        await nc.publish(subjects.a2a_card(agent), b"", reply=inbox, headers=headers)
        deadline = asyncio.get_running_loop().time() + ROUND_S
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except (NatsTimeout, TimeoutError):
                break
            if (msg.headers or {}).get("Status") == "503":  # no one subscribes at all
                break
            try:
                answer = _answer.decode(msg.data)
            except UNDECODABLE:
                continue
            if answer.error is None:
                return True, refusals
            refusals.append(answer.error.message)
        return False, refusals
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def name_free(nc: Client, name: str) -> None:
    """Raise 409 when something keeps answering as hosted agent `name`."""
    agent = subjects.hosted_agent(name)
    for _ in range(ROUNDS):
        answered, _ = await card_answers(nc, agent, check=False)
        if not answered:
            return
        await asyncio.sleep(ROUND_S)
    raise RequestError(
        f"agent {name!r} is already served as {agent} (an agent of the runners' "
        "configuration, `[runner] agents`); choose another name",
        409,
    )


async def served(nc: Client, name: str, timeout_s: float) -> None:
    """Return once a runner answers new agent `name`'s card; raise 503 with the runners'
    reason (or the likely one) when none does within `timeout_s`."""
    agent = subjects.hosted_agent(name)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    heard: list[str] = []
    refused_rounds = 0
    while True:
        answered, refusals = await card_answers(nc, agent, check=True)
        if answered:
            return
        heard = list(dict.fromkeys([*heard, *refusals]))
        refused_rounds += bool(refusals)
        # Refusals heard this often with no card: no runner that could serve it is coming.
        if loop.time() >= give_up or refused_rounds >= ROUNDS:
            break
        if not refusals:
            await asyncio.sleep(min(0.1, max(0.0, give_up - loop.time())))
    why = (
        "; ".join(heard)
        if heard
        else f"no runner serves hosted agents (none answered as {agent} within "
        f"{timeout_s:.0f} s): start one (`fleet run runner`, with `runtime_agents` on)"
    )
    raise RequestError(f"agent {name!r} was not created: {why}", 503)
