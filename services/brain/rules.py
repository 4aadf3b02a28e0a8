"""The rule policy: what the brain answers without a model (no ANTHROPIC_API_KEY).

Pure functions: read the request (`intent`, `workload`), and turn fleet.api
answers into text (`placement_answer`, `stats_answer`, `cleanup_answer`). Every
answer says that no model was used.
"""

from __future__ import annotations

import re
from typing import Any, Literal

NO_MODEL = "(Rule policy: no model was used; set ANTHROPIC_API_KEY to let Claude answer.)"
Intent = Literal["place", "stats", "cleanup", "health", "budget", "other"]

BYTES_PER_PARAM = 2.0
"""fp16/bf16 weights."""
OVERHEAD = 1.2
"""KV cache and activations on top of the weights, as a factor."""
_GPUS = (
    "H200",
    "H100",
    "A100",
    "L40S",
    "L40",
    "L4",
    "A10G",
    "A6000",
    "RTX4090",
    "RTX3090",
    "MI300X",
)


def intent(text: str) -> Intent:
    """What the request asks for, by keywords."""
    t = text.lower()
    if re.search(r"\bidle\b|clean ?up", t):
        return "cleanup"
    if re.search(r"\bwhere\b|\bplace|placement|\bvram\b|\bfit\b|\d+\s*b\b.*model|run .* model", t):
        return "place"
    if re.search(r"budget|spend|spent|cost", t):
        return "budget"
    if re.search(r"health|breaker|lag|down\b", t):
        return "health"
    if re.search(r"stat|utili[sz]|status|pool|load|queue|how many|report", t):
        return "stats"
    return "other"


def workload(text: str) -> dict[str, Any]:
    """The place_workload arguments a request describes (VRAM given or estimated from size)."""
    t = text.replace(",", "")
    need: dict[str, Any] = {}
    vram = re.search(r"(\d+(?:\.\d+)?)\s*gb", t, re.I)
    params = re.search(r"(\d+(?:\.\d+)?)\s*b\b", t, re.I)
    if vram:
        need["min_vram_gb"] = float(vram.group(1))
    elif params:
        need["min_vram_gb"] = round(float(params.group(1)) * BYTES_PER_PARAM * OVERHEAD, 1)
    else:
        need["min_vram_gb"] = 16.0
    upper = t.upper().replace(" ", "")
    for gpu in _GPUS:
        if gpu in upper:
            need["gpu_model"] = gpu
            break
    price = re.search(
        r"(?:under|below|max|<)\s*\$?(\d+(?:\.\d+)?)\s*(?:/\s*h|per hour|an hour)", t, re.I
    )
    if price:
        need["max_usd_per_hour"] = float(price.group(1))
    if re.search(r"\bamd\b", t, re.I):
        need["vendor"] = "AMD"
    return need


def _why_vram(text: str, need: dict[str, Any]) -> str:
    if re.search(r"\d\s*gb", text, re.I):
        return f"the workload needs {need['min_vram_gb']:g} GB of VRAM as stated"
    return (
        f"about {need['min_vram_gb']:g} GB of VRAM estimated from the model size "
        f"({BYTES_PER_PARAM:g} bytes per parameter plus {OVERHEAD - 1:.0%} for cache)"
    )


def placement_answer(text: str, need: dict[str, Any], placement: dict[str, Any]) -> str:
    """A placement and its reasoning, in words."""
    if "error" in placement:
        return f"I could not place it: {placement['error'].get('message')}. {NO_MODEL}"
    why = _why_vram(text, need)
    offer = placement.get("offer")
    if not placement.get("ok") or not offer:
        return (
            f"No offer fits: {why}. {placement.get('reasoning', '')} "
            f"Try a lower VRAM need, another GPU model or a higher price ceiling. {NO_MODEL}"
        ).strip()
    alts = placement.get("alternatives") or []
    alt = ""
    if alts and "runner-up" not in str(placement.get("reasoning", "")).lower():
        a = alts[0]
        alt = f" Next best: {a['gpu_model']} on {a['provider']} at ${a['usd_per_hour']:.2f}/h."
    gpus = offer.get("num_gpus", 1)
    return (
        f"Run it on {gpus} x {offer['gpu_model']} ({offer.get('vram_gb', 0):g} GB each) from "
        f"{offer['provider']} (offer {offer['offer_id']}) at ${offer['usd_per_hour']:.2f}/h. "
        f"Reasoning: {why}; {placement.get('reasoning', '').strip()}{alt} {NO_MODEL}"
    )


def stats_answer(stats: dict[str, Any]) -> str:
    """The fleet's figures in a few lines."""
    if "error" in stats:
        return f"Stats are not available: {stats['error'].get('message')}. {NO_MODEL}"
    lines = []
    for pool, p in sorted(stats.get("pools", {}).items()):
        lines.append(
            f"{pool}: {p['ready']} ready, {p['pending']} pending, {p['utilization']:.0%} "
            f"utilized, {p['inflight']:g} in flight, queue {p['queue']:g}, "
            f"${p['usd_per_hour']:.2f}/h"
        )
    b = stats.get("budget") or {}
    if b:
        lines.append(
            f"today: ${b.get('spent_today_usd', 0):.2f} spent of ${b.get('daily_usd', 0):.2f}, "
            f"burning ${b.get('burn_usd_per_hour', 0):.2f}/h"
        )
    return "\n".join(lines or ["No pools report metrics yet."]) + f"\n{NO_MODEL}"


def cleanup_answer(result: dict[str, Any]) -> str:
    """What idle cleanup found and released."""
    if "error" in result:
        return f"Idle cleanup failed: {result['error'].get('message')}. {NO_MODEL}"
    idle = result.get("idle", [])
    if not idle:
        return f"No ready unit has been idle past the threshold; nothing to release. {NO_MODEL}"
    decided = result.get("released", [])
    approved = sum(1 for v in decided if v.get("decision") == "approved")
    return (
        f"Found {len(idle)} idle units ({', '.join(u['unit'] for u in idle[:10])}); "
        f"{approved} releases approved by the cost-guard, saving "
        f"${result.get('saved_usd_per_hour', 0):.2f}/h. {NO_MODEL}"
    )


def budget_answer(budget: dict[str, Any]) -> str:
    if "error" in budget:
        return f"The budget is not available: {budget['error'].get('message')}. {NO_MODEL}"
    return (
        f"Spent ${budget.get('spent_today_usd', 0):.2f} of ${budget.get('daily_usd', 0):.2f} "
        f"today; burn ${budget.get('burn_usd_per_hour', 0):.2f}/h, projected "
        f"${budget.get('projected_today_usd', 0):.2f}; "
        f"{len(budget.get('held', []))} held. {NO_MODEL}"
    )


def health_answer(health: dict[str, Any]) -> str:
    if "error" in health:
        return f"Health is not available: {health['error'].get('message')}. {NO_MODEL}"
    if health.get("ok"):
        return f"All expected services answer: {', '.join(health.get('services', []))}. {NO_MODEL}"
    return "Problems: " + "; ".join(health.get("problems", [])) + f". {NO_MODEL}"


def other_answer() -> str:
    return (
        'Without a model I can answer placement ("where should a 70B model with 40 GB VRAM '
        'run?"), stats, budget, health and idle cleanup. Provisioning on request needs Claude: '
        f"set ANTHROPIC_API_KEY. {NO_MODEL}"
    )
