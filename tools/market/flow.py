"""Choosing the source (provisioner or the providers directly) and the exit code.

Exit codes: 0 answered; 1 nothing fits (`place`) or a provider refused its
credentials (the message names the provider and the setting); 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import msgspec

from contracts.offers import OfferFilter
from services.kit import ConfigError
from tools.market import direct, remote
from tools.market.report import Report
from tools.market.view import show_offers, show_placement


def offer_filter(verb: str, **fields: object) -> OfferFilter:
    """An OfferFilter from CLI options; a bad value exits 2 naming the option."""
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return msgspec.convert(given, OfferFilter)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for key, option in (
            ("min_vram_gb", "--min-vram/--vram"),
            ("max_usd_per_hour", "--max-usd-per-hour"),
        ):
            text = text.replace(f"$.{key}", option)
        raise SystemExit(f"fleet {verb}: {text}") from None


async def _source(
    verb: str,
    args: argparse.Namespace,
    via_nats: Callable[[], Awaitable[Report]],
    locally: Callable[[], Awaitable[Report]],
) -> Report:
    if not args.direct:
        try:
            return await via_nats()
        except remote.NoProvisioner as exc:
            print(
                f"fleet {verb}: {exc}; asking the providers directly "
                "(fleet.toml [providers.*], FLEET_<NAME>_URL / FLEET_<NAME>_KEY)",
                file=sys.stderr,
            )
    return await locally()


def _finish(verb: str, report: Report, as_json: bool) -> int:
    for name, status in sorted(report.auth_failures.items()):
        print(f"fleet {verb}: {name}: {status.detail}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.auth_failures else 0


def _fetch(
    verb: str,
    args: argparse.Namespace,
    ask_remote: Callable[[], Awaitable[Report]],
    ask_direct: Callable[[], Awaitable[Report]],
) -> Report | None:
    """The report from the provisioner or the providers; None (said on stderr) on bad input."""
    try:
        return asyncio.run(_source(verb, args, ask_remote, ask_direct))
    except (remote.ApiError, ValueError, ConfigError) as exc:
        print(f"fleet {verb}: {exc}", file=sys.stderr)
        return None


def run_offers(args: argparse.Namespace) -> int:
    """`fleet offers`."""
    flt = offer_filter(
        "offers",
        gpu_model=args.gpu,
        min_vram_gb=args.min_vram,
        vendor=args.vendor,
        tier=args.tier,
        max_usd_per_hour=args.max_usd_per_hour,
        provider=args.provider,
    )
    report = _fetch(
        "offers",
        args,
        lambda: remote.offers(flt, args.nats, args.timeout),
        lambda: direct.gather_offers(flt, args.config),
    )
    if report is None:
        return 2
    if not args.json:
        show_offers(report)
    return _finish("offers", report, args.json)


def run_place(args: argparse.Namespace) -> int:
    """`fleet place`."""
    need = offer_filter(
        "place",
        min_vram_gb=args.vram,
        gpu_model=args.gpu,
        provider=args.provider,
        max_usd_per_hour=args.max_usd_per_hour,
        num_gpus=args.gpus,
        runtime=args.runtime,
    )
    report = _fetch(
        "place",
        args,
        lambda: remote.place(need, args.nats, args.timeout),
        lambda: direct.place_direct(need, args.config),
    )
    if report is None:
        return 2
    if not args.json:
        show_placement(report)
    code = _finish("place", report, args.json)
    placement = report.placement
    if placement is None or not placement.ok:
        if args.json:
            print(
                f"fleet place: {placement.reasoning if placement else 'no answer'}", file=sys.stderr
            )
        return 1
    return code
