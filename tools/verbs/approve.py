"""`fleet approve ID` / `fleet reject ID`: decide a request the cost-guard holds.

The decision is signed with the operator's nkey (FLEET_OPERATOR_SEED, else the
file FLEET_OPERATOR_SEED_FILE names, else `.fleet/keys/operator.nk`); the
cost-guard takes the operator's name from that key, never from the message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from contracts import subjects
from contracts.commands import DecideReply, DecideRequest
from services.kit.config import resolve_nats_url
from services.kit.errors import ConfigError
from services.kit.service import encode
from tools.natsops import identity
from tools.signingkeys import operator_name, operator_signer

TIMEOUT_S = 5.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add both verbs: `approve` and `reject`."""
    for verb, approve, what in (
        ("approve", True, "approve a held request (the budget is re-checked now)"),
        ("reject", False, "reject a held request"),
    ):
        p = sub.add_parser(
            verb,
            help=what,
            description=f"{what[0].upper()}{what[1:]}; held requests are on fleet.budget.held.",
            epilog=f"example: fleet {verb} scale-h100-1712 --reason 'launch day'",
        )
        p.add_argument("id", metavar="ID", help="the held request's id")
        p.add_argument("--reason", default="", help="why, kept in the audit record")
        p.add_argument(
            "--nats", metavar="URL", help="NATS server (default: FLEET_NATS_URL, .fleet/nats.url)"
        )
        p.set_defaults(func=run, approve=approve)


def run(args: argparse.Namespace) -> int:
    """Send the decision and print the cost-guard's answer; 0 when it took effect."""
    try:
        subject = subjects.budget_decide(args.id)
    except subjects.SubjectError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    request = DecideRequest(
        approve=args.approve, operator=operator_name(), reason=args.reason[:4096]
    )
    url = resolve_nats_url(args.nats)
    try:
        body = asyncio.run(_ask(url, subject, encode(request)))
    except (ConnectionError, ConfigError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"fleet: no cost-guard answered at {url} within {TIMEOUT_S:g} s; is it running? "
            "(`fleet status`)",
            file=sys.stderr,
        )
        return 1
    try:
        data = json.loads(body)
    except ValueError:
        print(f"fleet: the cost-guard's answer is not JSON: {body[:200]!r}", file=sys.stderr)
        return 1
    if isinstance(data.get("error"), dict):  # the service's error envelope
        print(f"fleet: {data['error'].get('message', data['error'])}", file=sys.stderr)
        return 1
    reply = DecideReply(**{k: data.get(k) for k in ("ok", "id", "decision", "error")})
    if reply.ok:
        print(f"{reply.id}: {reply.decision}")
        return 0
    print(f"fleet: {reply.id}: {reply.decision}: {reply.error}", file=sys.stderr)
    return 1


async def _ask(url: str, subject: str, payload: bytes) -> bytes:
    """Connect, then sign `payload` with the operator's key and ask: a missing server is
    said before a missing key, and the seed is read only when it is about to be used."""
    import nats
    from nats.errors import NoRespondersError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=2,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=quiet,
                **identity(),  # the operator's, under `fleet up --secure`
            ),
            TIMEOUT_S,
        )
    except (NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
        raise ConnectionError(f"cannot reach NATS at {url} ({exc}); pass --nats URL") from exc
    try:
        headers = operator_signer().sign(subject, payload)
        msg = await nc.request(subject, payload, timeout=TIMEOUT_S, headers=headers)
        return bytes(msg.data)
    except (NoRespondersError, NatsTimeout) as exc:
        raise TimeoutError from exc
    finally:
        await nc.close()
