"""`fleet providers check`: the read-only calls of `shapes.PROBES` with the user's own key,
and each field the adapter reads judged against the real answer.

Every provider is asked at once and each call is bounded, so the whole check finishes in
under `BUDGET_S` even when a provider hangs. Nothing here creates, changes or deletes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.provisioner.providers.base import AuthError, ProviderError, Unavailable
from services.provisioner.providers.shapes import PROBES, FieldCheck, Probe, check
from services.provisioner.providers.transport import HttpAdapter, body_text, json_or_none
from tools.market.direct import build, provider_sections

BUDGET_S = 9.0
"""The whole check's time limit, seconds (the promise is "under 10 s")."""
CALL_TIMEOUT_S = 4.0
"""Longest one call may take, seconds; two calls per provider fit in the budget."""


@dataclass
class CallResult:
    """One probe: its fields' verdicts, or why it could not be judged."""

    probe: str
    path: str
    fields: list[FieldCheck] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        """No field missing or mistyped, and the call answered."""
        return not self.error and all(f.verdict in ("ok", "unchecked") for f in self.fields)


@dataclass
class ProviderResult:
    """How one provider's answers compare with what its adapter expects."""

    name: str
    state: str
    """ok, mismatch, auth, unavailable or error."""
    detail: str = ""
    calls: list[CallResult] = field(default_factory=list)


async def _probe(adapter: HttpAdapter, probe: Probe) -> CallResult:
    result = CallResult(probe.name, f"{probe.method} {probe.path}")
    try:
        resp = await adapter.http.request(
            probe.method, probe.path, params=probe.params or None, json=probe.body
        )
    except (AuthError, Unavailable):
        raise
    except ProviderError as exc:
        result.error = exc.message
        return result
    doc = json_or_none(resp)
    if resp.status_code != 200 or doc is None:
        result.error = f"HTTP {resp.status_code}: {body_text(resp, 120) or 'no JSON body'}"
        return result
    result.fields = check(doc, probe)
    return result


async def check_one(
    name: str, kind: str, section: Mapping[str, Any], environ: Mapping[str, str]
) -> ProviderResult:
    """Run every probe of provider `kind`; never raises."""
    section = {**section, "timeout_s": min(float(section.get("timeout_s", 15)), CALL_TIMEOUT_S)}
    adapter, failed = build(name, kind, section, environ)
    if adapter is None:
        return ProviderResult(name, "error", failed.detail if failed else "not built")
    try:
        if not isinstance(adapter, HttpAdapter):
            return ProviderResult(name, "error", "not an HTTP provider; nothing to check")
        if not adapter.available:
            try:
                adapter.http  # noqa: B018 - raises Unavailable naming the setting
            except Unavailable as exc:
                return ProviderResult(name, "unavailable", exc.message)
        calls = [await _probe(adapter, p) for p in PROBES.get(kind, ())]
    except AuthError as exc:
        return ProviderResult(name, "auth", exc.message)
    except Unavailable as exc:
        return ProviderResult(name, "unavailable", exc.message)
    except Exception as exc:  # an odd answer from one provider must not hide the others
        return ProviderResult(name, "error", f"{type(exc).__name__}: {exc}"[:300])
    finally:
        await adapter.close()
    state = "ok" if all(c.ok for c in calls) else "mismatch"
    return ProviderResult(name, state, calls=calls)


async def check_all(
    only: str | None = None,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[ProviderResult], float]:
    """Every provider (or `only`) checked at once; the results and the seconds it took."""
    env = os.environ if environ is None else environ
    sections = provider_sections(config)
    if only is not None and only not in sections:
        raise ValueError(f"unknown provider {only!r}; providers: {', '.join(sorted(sections))}")
    wanted = {n: v for n, v in sections.items() if only in (None, n)}
    start = time.monotonic()

    async def bounded(name: str, kind: str, section: Mapping[str, Any]) -> ProviderResult:
        try:
            return await asyncio.wait_for(check_one(name, kind, section, env), BUDGET_S)
        except TimeoutError:
            return ProviderResult(name, "error", f"no answer within {BUDGET_S:g}s")

    results = await asyncio.gather(*(bounded(n, k, s) for n, (k, s) in wanted.items()))
    return list(results), time.monotonic() - start


def to_json(results: list[ProviderResult], took_s: float) -> dict[str, Any]:
    """The `--json` document."""
    return {
        "took_s": round(took_s, 3),
        "providers": {r.name: msgspec.to_builtins(r) for r in results},
    }


def render(results: list[ProviderResult], took_s: float) -> str:
    """The human view: one block per provider, one line per field."""
    lines: list[str] = []
    for r in sorted(results, key=lambda r: r.name):
        lines.append(f"{r.name:<10} {r.state}" + (f"  {r.detail}" if r.detail else ""))
        for call in r.calls:
            lines.append(f"  {call.probe}  ({call.path})")
            if call.error:
                lines.append(f"    ! {call.error}")
            for f in call.fields:
                mark = {"ok": "ok", "unchecked": "--"}.get(f.verdict, "!!")
                lines.append(
                    f"    {mark:<3}{f.path:<52} expected {f.expected:<14} got {f.got}"
                    + ("" if f.verdict in ("ok", "unchecked") else f"  ({f.verdict})")
                )
    lines.append(f"checked in {took_s:.1f}s (read-only calls; nothing was created or changed)")
    return "\n".join(lines)
