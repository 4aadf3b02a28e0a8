"""A pool's demand read from Prometheus's HTTP API (`GET /api/v1/query`).

Prometheus returns sample values as strings, including "NaN", "+Inf" and
"-Inf"; non-finite and negative values are ignored, so a broken exporter
never becomes a scaling decision. The vector's finite values are summed.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import msgspec

from services.watcher.windows import Measure


class PrometheusSource(msgspec.Struct, frozen=True, kw_only=True):
    """`[watcher.prometheus.<pool>]`: a PromQL query whose value is the pool's demand."""

    url: str
    """Base URL of the Prometheus server, e.g. http://prometheus:9090."""
    query: str
    """Instant PromQL query; its finite sample values are summed."""
    interval_s: float = 15.0
    """Seconds between polls; Prometheus's default scrape interval."""
    measures: Measure = "inflight"
    """What the value is: requests in flight, requests queued, or arrivals per second."""
    timeout_s: float = 5.0
    """Seconds one query may take before the poll counts as failed."""
    stale_after_s: float = 0.0
    """Seconds a value is used after it was read; 0 means 3 x interval_s."""


class PrometheusError(Exception):
    """The query failed or its answer is not an instant vector/scalar."""


def parse_value(raw: Any) -> float | None:
    """One sample value (a string in Prometheus's JSON), or None when not finite or negative."""
    try:
        x = float(raw)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or x < 0:
        return None
    return x


def parse_response(body: Any) -> float:
    """The sum of the finite values of a `/api/v1/query` answer."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(f"query failed: {error or 'unexpected answer'}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return parse_value(result[1]) or 0.0
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"expected an instant vector, got {kind!r}")
    total = 0.0
    for sample in result:
        value = sample.get("value") if isinstance(sample, dict) else None
        if isinstance(value, list) and len(value) == 2:
            x = parse_value(value[1])
            if x is not None:
                total += x
    return total


async def query(client: httpx.AsyncClient, source: PrometheusSource) -> float:
    """Run the source's query once; raises PrometheusError with the reason on failure."""
    url = source.url.rstrip("/") + "/api/v1/query"
    try:
        resp = await client.get(url, params={"query": source.query}, timeout=source.timeout_s)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"GET {url}: {exc.__class__.__name__}: {exc}") from exc
    try:
        body = resp.json()
    except ValueError as exc:
        raise PrometheusError(f"GET {url}: HTTP {resp.status_code}, not JSON") from exc
    if resp.status_code >= 400 and not isinstance(body, dict):
        raise PrometheusError(f"GET {url}: HTTP {resp.status_code}")
    return parse_response(body)
