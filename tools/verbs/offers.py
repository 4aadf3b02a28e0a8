"""`fleet offers`: live GPU offers across providers, cheapest first."""

from __future__ import annotations

import argparse

from tools.market.flow import run_offers
from tools.market.remote import TIMEOUT_S


def add_source_options(p: argparse.ArgumentParser) -> None:
    """--json, --direct, --nats, --config, --timeout: shared by offers and place."""
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--direct",
        action="store_true",
        help="ask the providers from here (fleet.toml / FLEET_<NAME>_URL, FLEET_<NAME>_KEY) "
        "instead of the running provisioner",
    )
    p.add_argument(
        "--nats", metavar="URL", help="NATS URL (default: FLEET_NATS_URL, .fleet/nats.url)"
    )
    p.add_argument(
        "--config", metavar="FILE", help="fleet.toml for --direct (default: ./fleet.toml)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the provisioner (default {TIMEOUT_S:g})",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "offers",
        help="live GPU offers across providers, cheapest first",
        description="List what the providers will rent now, cheapest first: provider, GPU, "
        "vendor, tier, VRAM per card, GPUs, $/h for the whole offer, reliability, region and "
        "availability. Asks the running provisioner (fleet.api.gpus.available); with --direct, "
        "or when no provisioner answers, asks the providers from here using fleet.toml and "
        "FLEET_<NAME>_URL / FLEET_<NAME>_KEY. Providers without credentials are listed as "
        "unavailable; one that refuses its key is reported with the setting to fix and the "
        "exit code is 1.",
        epilog="examples:\n  fleet offers --gpu H100\n  fleet offers --min-vram 40 "
        "--max-usd-per-hour 2.5\n"
        "  fleet offers --provider vastai --direct --json | jq '.offers[0]'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--provider", metavar="P", help="only this provider (vastai, ionet, ...)")
    p.add_argument("--gpu", metavar="MODEL", help="GPU model: H100, A100-80GB, RTX4090, ...")
    p.add_argument("--min-vram", type=float, metavar="GB", help="VRAM per card at least GB")
    p.add_argument("--vendor", metavar="V", help="NVIDIA, AMD, ...")
    p.add_argument("--tier", metavar="T", help="enterprise, high_end, mid_range, budget, cpu")
    p.add_argument(
        "--max-usd-per-hour", type=float, metavar="X", help="price of the offer at most X"
    )
    add_source_options(p)
    p.set_defaults(func=run_offers)
