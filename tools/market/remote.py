"""Asking a running provisioner (`fleet.api.gpus.available`, `fleet.api.place`) over NATS."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import subjects
from contracts.offers import Offer, OfferFilter, Placement
from services.kit.config import resolve_nats_url
from tools.market.report import Report, status_from_text
from tools.natsops import ask_json, cli_connect

TIMEOUT_S = 30.0
"""How long to wait for the provisioner; it gives a slow provider 20 s before leaving it out.
With no provisioner at all NATS answers "no responders" at once."""


class NoProvisioner(Exception):
    """Nobody answered: no NATS, or no provisioner serving fleet.api."""


class ApiError(Exception):
    """The provisioner answered with an error (bad input)."""


async def _ask(nats_url: str | None, op: str, body: Any, timeout_s: float) -> Any:
    target = resolve_nats_url(nats_url)
    try:
        nc = await cli_connect(nats_url, "fleet-market")
    except SystemExit:
        raise NoProvisioner(f"no NATS server at {target}") from None
    try:
        reply = await ask_json(nc, subjects.api(op), body, timeout_s=timeout_s)
    finally:
        await nc.close()
    if reply is None:
        raise NoProvisioner(f"no provisioner answered {subjects.api(op)} at {target}")
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        raise ApiError(str(reply["error"].get("message") or reply["error"]))
    return reply


def _providers(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {str(n): status_from_text(str(s)) for n, s in raw.items()}


async def offers(
    flt: OfferFilter, nats_url: str | None = None, timeout_s: float = TIMEOUT_S
) -> Report:
    """Offers from the provisioner, cheapest first as it merged them."""
    reply = await _ask(nats_url, "gpus.available", msgspec.to_builtins(flt), timeout_s)
    try:
        found = msgspec.convert(reply.get("offers") or [], list[Offer])
    except (AttributeError, msgspec.ValidationError) as exc:
        raise ApiError(f"unexpected reply from the provisioner: {exc}") from None
    return Report(source="provisioner", offers=found, providers=_providers(reply.get("providers")))


async def place(
    need: OfferFilter, nats_url: str | None = None, timeout_s: float = TIMEOUT_S
) -> Report:
    """The provisioner's placement for `need`, with each provider's status from an offers query."""
    reply = await _ask(nats_url, "place", msgspec.to_builtins(need), timeout_s)
    try:
        placement = msgspec.convert(reply, Placement)
    except msgspec.ValidationError as exc:
        raise ApiError(f"unexpected reply from the provisioner: {exc}") from None
    return Report(source="provisioner", placement=placement)
