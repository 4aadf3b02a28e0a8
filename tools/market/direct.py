"""Asking the providers themselves, with no stack running.

Adapters are built through the provider registry from fleet.toml's
`[providers.<name>]` tables and the environment (`FLEET_<NAME>_URL`,
`FLEET_<NAME>_KEY`, the provider's own key variable), exactly as the
provisioner builds them. A provider without credentials is reported as
unavailable with the setting to set; one that refuses its key as `auth`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from contracts.offers import Offer, OfferFilter
from services.kit.config import config_path, read_toml
from services.provisioner.placement import filter_offers, merge_offers, place
from services.provisioner.providers import registry
from services.provisioner.providers.base import (
    AuthError,
    Provider,
    ProviderError,
    Retryable,
    Unavailable,
)
from services.provisioner.providers.settings import ProviderSettings
from services.provisioner.retry import call_with_retry
from tools.market.report import ProviderStatus, Report

MARKETS: tuple[str, ...] = ("vastai", "ionet", "runpod", "lambda", "hypercore")
"""Providers asked when fleet.toml names none: every real API the registry knows."""
LOCAL_KINDS = frozenset({"sim", "local"})
"""Kinds that live inside the provisioner (a simulated market, local processes)."""
TIMEOUT_S = 20.0
"""Longest one provider may take to answer, retries included, seconds."""
ATTEMPTS = 3
"""Calls per provider before a 429/5xx/timeout is reported as its status."""


def provider_sections(
    config: str | None = None,
) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """name -> (kind, `[providers.<name>]` table) for every real provider to ask.

    The five market providers always, plus any fleet.toml table whose `kind` is one
    of them (a second Vast.ai account, say); `sim` and `local` are left out.
    """
    tables = read_toml(config_path(config)).get("providers") or {}
    out: dict[str, tuple[str, Mapping[str, Any]]] = {n: (n, tables.get(n) or {}) for n in MARKETS}
    for name, section in tables.items():
        if not isinstance(section, dict):
            continue
        kind = str(section.get("kind", name))
        if kind in LOCAL_KINDS or kind not in registry.known_providers():
            continue
        out[name] = (kind, {k: v for k, v in section.items() if k != "kind"})
    return out


def build(
    name: str, kind: str, section: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Provider | None, ProviderStatus | None]:
    """The adapter, or None and the status that says why it could not be built."""
    try:
        settings = ProviderSettings.from_env(kind, section, environ)
        return registry.build_provider(kind, settings), None
    except ValueError as exc:
        return None, ProviderStatus("error", f"{name}: {exc}")


async def ask_one(provider: Provider, flt: OfferFilter) -> tuple[list[Offer], ProviderStatus]:
    """Offers of one provider, retried on 429/5xx/timeouts; never raises."""
    try:
        offers = await asyncio.wait_for(
            call_with_retry(
                lambda: provider.offers(flt), attempts=ATTEMPTS, base_s=0.25, max_s=2.0
            ),
            TIMEOUT_S,
        )
    except Unavailable as exc:
        return [], ProviderStatus("unavailable", exc.message)
    except AuthError as exc:
        return [], ProviderStatus("auth", exc.message)
    except Retryable as exc:
        return [], ProviderStatus("error", f"{exc.message} (after {ATTEMPTS} tries)")
    except ProviderError as exc:
        return [], ProviderStatus("error", exc.message)
    except TimeoutError:
        return [], ProviderStatus("error", f"no answer within {TIMEOUT_S:g}s")
    except Exception as exc:  # a provider's odd answer must not take the others down
        return [], ProviderStatus("error", f"{type(exc).__name__}: {exc}"[:300])
    return offers, ProviderStatus("ok")


async def gather_offers(
    flt: OfferFilter, config: str | None = None, environ: Mapping[str, str] | None = None
) -> Report:
    """Offers matching `flt` from every provider (or `flt.provider` only), cheapest first."""
    env = os.environ if environ is None else environ
    sections = provider_sections(config)
    if flt.provider and flt.provider not in sections:
        known = ", ".join(sorted(sections))
        raise ValueError(f"unknown provider {flt.provider!r}; providers: {known}")
    wanted = {n: v for n, v in sections.items() if flt.provider in (None, n)}
    report = Report(source="direct")
    built: dict[str, Provider] = {}
    for name, (kind, section) in wanted.items():
        provider, failed = build(name, kind, section, env)
        if provider is None:
            report.providers[name] = failed or ProviderStatus("error", "not built")
        else:
            built[name] = provider
    try:
        answers = await asyncio.gather(*(ask_one(p, flt) for p in built.values()))
    finally:
        for p in built.values():
            await p.close()
    lists = []
    for name, (offers, status) in zip(built, answers, strict=True):
        report.providers[name] = status
        # An adapter's offers carry the adapter's name; a second account shows as its own.
        lists.append([_renamed(o, name) for o in offers])
    report.offers = filter_offers(merge_offers(lists), flt)
    return report


async def place_direct(
    need: OfferFilter, config: str | None = None, environ: Mapping[str, str] | None = None
) -> Report:
    """Where a workload needing `need` should run, from the providers' own answers."""
    report = await gather_offers(OfferFilter(provider=need.provider), config, environ)
    report.placement = place(report.offers, need, unavailable_providers=report.unusable)
    return report


def _renamed(offer: Offer, name: str) -> Offer:
    if offer.provider == name:
        return offer
    return msgspec.structs.replace(offer, provider=name)
