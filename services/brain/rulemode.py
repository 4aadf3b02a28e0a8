"""The rule policy at work: read the request (services.brain.intents), call the tools
it allows, and answer in words (services.brain.rules).

Read-only tools run for any request. A tool that adds or removes units runs
only for an explicit command; for anything else the answer says what was found,
what an explicit command would look like, and what it would need. Every call
goes through the same toolbox as the model's, so it is audited the same way.
"""

from __future__ import annotations

from typing import Any

from services.brain import coordinator, intents, rules
from services.brain.advisoragent import Consult
from services.brain.coordinator import Tools
from services.brain.intents import Reading

NO_MODEL = rules.NO_MODEL


SKILLS_WITHOUT_MODEL: frozenset[str] = frozenset(
    {"place", "report", "provision", "release", "cleanup", "history"}
)
"""The agent card's skills the rule policy can do (provision, release and cleanup only on
an explicit command); scale, failover and batch need Claude."""


async def answer(text: str, tools: Tools, consult: Consult | None = None) -> tuple[str, Any]:
    """The rule policy's answer to `text`, and the data behind it; `consult` asks an
    advisor (A2A) for its view of a report."""
    r = intents.read(text)
    why = f"rule policy: reads as '{r.intent}' ({r.why})"
    match r.intent:
        case "history" | "coordinate":
            return await coordinator.answer(text, tools, consult, why, NO_MODEL)
        case "place":
            need = rules.workload(text)
            data, _ = await tools.call("place_workload", need, why)
            return rules.placement_answer(text, need, data), data
        case "stats" | "scale":
            data, _ = await tools.call("get_gpu_stats", {}, why)
            return rules.stats_answer(data, rules.NEEDS_MODEL.get(r.intent, "")), data
        case "list":
            data, _ = await tools.call("list_gpu_instances", {}, why)
            return rules.units_answer(data), data
        case "budget":
            data, _ = await tools.call("get_budget", {}, why)
            return rules.budget_answer(data), data
        case "health":
            data, _ = await tools.call("get_health_status", {}, why)
            return rules.health_answer(data), data
        case "cleanup":
            return await _cleanup(r, tools, why)
        case "provision":
            return await _provision(r, tools, why, text)
        case "destroy" | "failover":
            return await _destroy(r, tools, why)
        case "batch":
            return await _batch(text, tools, why)
    return rules.other_answer(), None


async def _cleanup(r: Reading, tools: Tools, why: str) -> tuple[str, Any]:
    minutes = r.args.get("idle_threshold_minutes", 30.0)
    if r.explicit:
        data, _ = await tools.call("cleanup_idle_gpus", {"idle_threshold_minutes": minutes}, why)
        return rules.cleanup_answer(data), data
    look = {"idle_threshold_minutes": minutes, "dry_run": True}
    data, _ = await tools.call("cleanup_idle_gpus", look, why)
    return rules.dry_cleanup_answer(data, minutes, r.why), data


async def _provision(r: Reading, tools: Tools, why: str, text: str) -> tuple[str, Any]:
    if r.explicit:
        args = {**r.args, "reason": f"asked: {text.strip()[:200]}"}
        data, _ = await tools.call("provision_gpu", args, why)
        return rules.provision_answer(r.args, data), data
    offers_filter = {"gpu_model": r.args["gpu_model"]} if "gpu_model" in r.args else {}
    data, _ = await tools.call("get_available_gpus", offers_filter, why)
    return rules.not_provisioning_answer(r, data), data


async def _destroy(r: Reading, tools: Tools, why: str) -> tuple[str, Any]:
    if r.explicit:
        data, _ = await tools.call("destroy_gpu_instance", r.args, why)
        return rules.destroy_answer(r.args, data), data
    data, _ = await tools.call("list_gpu_instances", {}, why)
    return rules.not_destroying_answer(r, data), data


async def _batch(text: str, tools: Tools, why: str) -> tuple[str, Any]:
    job = rules.batch_terms(text)
    flt = {"gpu_model": job["gpu_model"]} if job.get("gpu_model") else {}
    data, _ = await tools.call("get_available_gpus", flt, why)
    return rules.batch_answer(job, data), data
