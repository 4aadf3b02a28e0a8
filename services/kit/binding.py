"""Whether this process creates the JetStream resources it uses, or only binds to them.

By default a service creates what it needs at start (streams, its durable consumers,
its KV buckets), which keeps `fleet run` and the tests self-contained. A secured
deployment takes that right away: `fleet init` creates everything as the admin, and
each identity may only bind (ADR 0013). A service there that finds something missing
stops with a message naming it and the fix, rather than waiting on a create the server
refuses. One process is one service, so the choice is the process's; `Service.start`
sets it from `[nats] create_resources`.
"""

from __future__ import annotations

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from services.kit.errors import NotInitialized

_create_missing = True


def creates(flag: bool) -> None:
    """Set whether this process creates missing resources (True) or only binds (False)."""
    global _create_missing
    _create_missing = flag


def creating() -> bool:
    """True while this process creates the resources it finds missing."""
    return _create_missing


def missing(kind: str, name: str) -> NotInitialized:
    """The error of a resource this binding-only process cannot find."""
    return NotInitialized(
        f"{kind} {name} does not exist, and this deployment's services only bind to what "
        "`fleet init` created ([nats] create_resources = false): run `fleet init` (as the "
        "admin identity) first"
    )


async def pull(
    js: JetStreamContext,
    subject: str,
    durable: str,
    stream: str | None,
    config: ConsumerConfig,
) -> JetStreamContext.PullSubscription:
    """Bind a pull subscription to durable `durable`, creating it if it is missing.

    A binding-only process may still create a durable its identity is granted (the
    cost-guard recreates its own to replay the ledger); when the server refuses (the
    request times out) or the stream is missing, the error says to run `fleet init`.
    """
    try:
        return await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    except (NatsTimeout, TimeoutError, NotFoundError):
        if _create_missing:
            raise
        where = f"{durable} on stream {stream or subject}"
        raise missing("durable consumer", where) from None
