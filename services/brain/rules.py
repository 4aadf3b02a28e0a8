"""The rule policy: what the brain answers without a model (no ANTHROPIC_API_KEY).

Pure functions: read a workload from the request (`workload`, `batch_terms`)
and turn fleet.api answers into text. Every answer says that no model was used;
one that did not act says why and what an explicit command would need.
`services.brain.intents` reads the request, `services.brain.rulemode` calls the tools.
"""

from __future__ import annotations

import re
from typing import Any

from services.brain.intents import GPUS, Reading

NO_MODEL = "(Rule policy: no model was used; set ANTHROPIC_API_KEY to let Claude answer.)"
NEEDS_MODEL = {
    "scale": "Deciding whether to scale needs Claude; the scaler already scales each pool "
    "from its load, and explicit commands work here ('provision 2 H100 for 2 hours').",
}
"""What a read-only answer adds for requests only a model can act on."""

BYTES_PER_PARAM = 2.0
"""fp16/bf16 weights."""
OVERHEAD = 1.2
"""KV cache and activations on top of the weights, as a factor."""


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
    for gpu in GPUS:
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


def stats_answer(stats: dict[str, Any], note: str = "") -> str:
    """The fleet's figures in a few lines, and `note` on what a model would add."""
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
    lines = lines or ["No pools report metrics yet."]
    if note:
        lines.append(note)
    return "\n".join(lines) + f"\n{NO_MODEL}"


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
        'run?"), stats, instances, budget and health, and carry out explicit commands: '
        '"provision 2 H100 for 2 hours", "destroy instance ID on PROVIDER", "clean up GPUs '
        'idle for more than 30 minutes". Anything else needs Claude: set ANTHROPIC_API_KEY. '
        f"{NO_MODEL}"
    )


def _err(data: dict[str, Any]) -> str:
    err = data.get("error")
    return str(err.get("message") if isinstance(err, dict) else err)


def units_answer(units: dict[str, Any]) -> str:
    """The instances, one short line each."""
    if "error" in units:
        return f"Instances are not available: {_err(units)}. {NO_MODEL}"
    rows = units.get("units", [])
    lines = [
        f"{u['unit']} ({u['provider']} {u.get('provider_unit_id') or '-'}): {u['pool']}, "
        f"{u['state']}, {u.get('gpu_model', '')} ${float(u.get('usd_per_hour', 0)):.2f}/h"
        for u in rows[:30]
    ]
    return "\n".join(lines or ["No instances."]) + f"\n{NO_MODEL}"


def dry_cleanup_answer(result: dict[str, Any], minutes: float, why: str) -> str:
    """What an idle cleanup would release, without releasing it."""
    if "error" in result:
        return f"Idle cleanup could not look: {_err(result)}. {NO_MODEL}"
    idle = result.get("idle", [])
    found = ", ".join(u["unit"] for u in idle[:10]) or "none"
    return (
        f"Released nothing, since {why}. Idle for {minutes:g}+ minutes: {found}. To release "
        f"them, say: 'clean up GPUs idle for more than {minutes:g} minutes'. {NO_MODEL}"
    )


def provision_answer(args: dict[str, Any], verdict: dict[str, Any]) -> str:
    """The cost-guard's verdict on an explicit provision."""
    if "error" in verdict:
        return f"Provisioning was refused: {_err(verdict)}. {NO_MODEL}"
    kept = f"for {args['duration']:g} s" if args.get("duration") else "until released"
    return (
        f"Asked for {args['count']} x {args['gpu_model']} (kept {kept}); the cost-guard "
        f"{verdict.get('decision')} it: {verdict.get('reason', '')} {NO_MODEL}"
    )


def not_provisioning_answer(r: Reading, offers: dict[str, Any]) -> str:
    """Why nothing was provisioned, what is on offer, and what a command needs."""
    cheapest = sorted(offers.get("offers", []), key=lambda o: o.get("usd_per_hour", 0))[:3]
    seen = "; ".join(
        f"{o['gpu_model']} on {o['provider']} ${o['usd_per_hour']:.2f}/h" for o in cheapest
    )
    needs = f" It would need {' and '.join(r.missing)}." if r.missing else ""
    return (
        f"Provisioned nothing, since {r.why}.{needs} Cheapest offers: {seen or 'none'}. To "
        f"provision, say e.g. 'provision 2 H100 for 2 hours'. {NO_MODEL}"
    )


def destroy_answer(args: dict[str, Any], verdict: dict[str, Any]) -> str:
    """The cost-guard's verdict on an explicit destroy."""
    if "error" in verdict:
        return f"Could not destroy {args['instance_id']}: {_err(verdict)}. {NO_MODEL}"
    return (
        f"Release of {args['provider']} instance {args['instance_id']}: "
        f"{verdict.get('decision')} ({verdict.get('reason', '')}). {NO_MODEL}"
    )


def not_destroying_answer(r: Reading, units: dict[str, Any]) -> str:
    """Why nothing was destroyed, the instances seen, and what a command needs."""
    live = [u for u in units.get("units", []) if u.get("state") not in ("terminated", "failed")]
    seen = ", ".join(
        f"{u['provider']}/{u.get('provider_unit_id') or u['unit']} ({u['state']})"
        for u in live[:10]
    )
    needs = f" It would need {' and '.join(r.missing)}." if r.missing else ""
    return (
        f"Destroyed and provisioned nothing, since {r.why}.{needs} Live instances: "
        f"{seen or 'none'}. Units the watcher finds failed are replaced on the pool's next "
        "provider automatically; to remove one by hand, say 'destroy instance ID on "
        f"PROVIDER'. Failover with moved work and alerts needs Claude. {NO_MODEL}"
    )


def batch_terms(text: str) -> dict[str, Any]:
    """What a batch request states: items, GPU-hours on one GPU, cost cap, GPU model."""
    t = text.replace(",", "")
    job: dict[str, Any] = {}
    if m := re.search(r"(\d+)\s+(images|items|jobs|files|documents|videos|prompts)", t, re.I):
        job["items"] = int(m.group(1))
    if m := re.search(r"(\d+(?:\.\d+)?)\s*hours?\s+with\s+(?:1|one)\s+gpu", t, re.I):
        job["gpu_hours"] = float(m.group(1))
    if m := re.search(r"(?:<|under|below|less than)\s*\$\s*(\d+(?:\.\d+)?)", t, re.I):
        job["max_usd"] = float(m.group(1))
    upper = t.upper().replace(" ", "")
    job["gpu_model"] = next((g for g in GPUS if g in upper), None)
    return job


def batch_answer(job: dict[str, Any], offers: dict[str, Any]) -> str:
    """A costed batch plan, without provisioning anything."""
    rows = sorted(offers.get("offers", []), key=lambda o: o.get("usd_per_hour", 0))
    if not rows:
        return f"No offers for this batch ({job}); nothing provisioned. {NO_MODEL}"
    best = rows[0]
    price = float(best["usd_per_hour"])
    head = f"Cheapest: {best['gpu_model']} on {best['provider']} at ${price:.2f}/h."
    hours = job.get("gpu_hours")
    if hours is None:
        return f"{head} State the GPU-hours to get a costed plan; nothing provisioned. {NO_MODEL}"
    cost = hours * price
    cap = job.get("max_usd")
    fits = "" if cap is None else (" within" if cost <= cap else " over") + f" the ${cap:g} cap"
    return (
        f"{head} {hours:g} GPU-hours cost about ${cost:.2f}{fits} whatever the split: n GPUs "
        f"finish in {hours:g}/n hours. Provisioned nothing; to start, say e.g. 'provision 5 "
        f"{best['gpu_model']} for {max(hours / 5, 0.1):.1f} hours'. {NO_MODEL}"
    )
