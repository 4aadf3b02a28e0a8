"""What a request asks for, read without a model: a pure, table-driven classifier.

The rule policy must never remove or add units on a guess. So the classifier
says two things: the intent (from an ordered table of patterns; the first match
wins, so "clean up GPUs when the batch is done" is a batch, not a cleanup) and
whether the request is an explicit command (one imperative instruction, with
no condition, no hedge, no list of steps, and every argument it needs stated).
Only an explicit command may act; anything else is answered read-only.
`tests/data/rule_intents.json` holds the guide's phrasings and paraphrases
with the expected answers.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

Intent = Literal[
    "failover",
    "batch",
    "history",
    "coordinate",
    "scale",
    "cleanup",
    "destroy",
    "provision",
    "place",
    "budget",
    "health",
    "list",
    "stats",
    "unknown",
]
ACTS: frozenset[str] = frozenset({"cleanup", "destroy", "provision"})
"""Intents that remove or add units: carried out only on an explicit command."""

GPUS = (
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
PROVIDERS = ("vastai", "ionet", "runpod", "lambda", "hypercore", "sim", "local")
_WORDS = {
    "one": 1,
    "a": 1,
    "an": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}

_GPU_WORDS = r"gpus?|units?|instances?|nodes?|machines?|" + "|".join(g.lower() for g in GPUS)
TABLE: tuple[tuple[Intent, str], ...] = (
    (
        "failover",
        r"fail ?over|fail\w*\s+(its\s+|the\s+)?health|health checks? .{0,20}fail|backup gpu",
    ),
    ("batch", r"\bbatch\b|\b\d[\d,]*\s+(images|items|jobs|files|documents|videos|prompts)\b"),
    (
        "history",
        r"last \d+ days|past (week|month|\d+ days)|histor|usage patterns?|peak usage|"
        r"\btrends?\b|reserved instances|\b(last|this) (week|month)\b|\b\d+[- ]day report|"
        r"recommend (changes|savings)",
    ),
    (
        "coordinate",
        r"coordinat|optimizer agent|multi-agent|cost optimizer|performance optimizer|"
        r"\badvisors?\b",
    ),
    (
        "scale",
        r"auto-?scal|\bscale (up|down|in|out)\b|trending to exceed|scale .{0,20}(pool|with)",
    ),
    ("cleanup", r"\bidle\b|clean ?up"),
    (
        "destroy",
        r"\b(destroy|terminate|kill|delete|remove|release|shut ?down|tear down|decommission)\b"
        rf".{{0,40}}\b({_GPU_WORDS}|vast-|io-)",
    ),
    (
        "provision",
        r"\b(provision|rent|spin up|launch|allocate|add|get me|give me|bring up|reserve)\b"
        rf".{{0,40}}\b({_GPU_WORDS})",
    ),
    (
        "place",
        r"\bwhere\b|\bplace|placement|\broute|routing|optimal gpu|which gpu|\bvram\b|"
        r"\bfit\b|inference request|run .{0,30}model|\d+\s*b\b.{0,20}model",
    ),
    ("budget", r"budget|spend|spent|\bcosts?\b|burn rate|how much .{0,30}(today|so far)"),
    ("health", r"health|breaker|\bdown\b|outage|\balive\b|\blag\b|services? (up|running)"),
    ("list", r"\blist\b|which (instances|units|gpus)|show .{0,20}(instances|units)|running now"),
    ("stats", r"\bstat|utili[sz]|\bstatus\b|\bpools?\b|\bload\b|\bqueue|how many|report|in flight"),
)
_COMPILED = tuple((intent, re.compile(p, re.I)) for intent, p in TABLE)
_CONDITION = re.compile(
    r"\b(if|when|whenever|unless|once|whether|in case|as soon as|should (we|i)|do we need)\b",
    re.I,
)
_HEDGE = re.compile(
    r"\b(might|maybe|perhaps|probably|consider|thinking about|would it|could (we|you)|"
    r"what if|recommend|suggest|plan\b|should)\b",
    re.I,
)
_STEPS = re.compile(r"(^|\n)\s*\d+[.)]\s", re.M)
_QUESTION = re.compile(r"\?\s*$|^\s*(where|what|how|which|who|why|is|are|can|do|does)\b", re.I)


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """What a request asks for, and whether it may be acted on as it stands."""

    intent: Intent
    explicit: bool
    """An unambiguous command: acting on it is what was asked."""
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    """The arguments the request states (never guessed)."""
    missing: list[str] = msgspec.field(default_factory=list)
    """What an explicit command would still have to name."""
    why: str = ""
    """Why it is, or is not, explicit: one phrase, shown to the user."""


def intent_of(text: str) -> Intent:
    """The first intent of the table whose pattern the text matches."""
    for intent, pattern in _COMPILED:
        if pattern.search(text):
            return intent
    return "unknown"


def count_of(text: str) -> int | None:
    """The number of units asked for, when the text says it."""
    m = re.search(
        r"\b(\d+|" + "|".join(_WORDS) + r")\s+(?:more\s+|additional\s+|new\s+|extra\s+)?"
        r"(?:x\s+)?(?:[a-z0-9-]+\s+)?(?:" + _GPU_WORDS + r")",
        text,
        re.I,
    )
    if not m:
        return None
    word = m.group(1).lower()
    return int(word) if word.isdigit() else _WORDS.get(word)


def gpu_of(text: str) -> str | None:
    """The GPU model the text names."""
    squashed = text.upper().replace(" ", "").replace("-", "")
    return next((g for g in GPUS if g in squashed), None)


def duration_s_of(text: str) -> float | None:
    """A stated duration ('for 2 hours', 'for 30 minutes'), in seconds."""
    m = re.search(
        r"\bfor\s+(\d+(?:\.\d+)?|an?|one|two|three|four|six|eight|twelve)\s*"
        r"(h|hours?|hrs?|m|min|minutes?|s|sec|seconds?|days?)\b",
        text,
        re.I,
    )
    if not m:
        return None
    raw = m.group(1).lower()
    words = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "six": 6}
    words |= {"eight": 8, "twelve": 12}
    n = float(raw) if raw[0].isdigit() else float(words[raw])
    unit = m.group(2).lower()[0]
    return n * {"h": 3600.0, "m": 60.0, "s": 1.0, "d": 86400.0}[unit]


def idle_minutes_of(text: str) -> float | None:
    """A stated idle threshold in minutes ('idle > 30 min', 'idle for an hour')."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*(h|hours?|m|min|minutes?)\b", text, re.I)
    if not m:
        return 60.0 if re.search(r"\ban hour\b", text, re.I) else None
    n = float(m.group(1))
    return n * 60.0 if m.group(2).lower().startswith("h") else n


def instance_of(text: str) -> tuple[str | None, str | None]:
    """(provider, instance id) the text names; the provider only when said outright."""
    lowered = text.lower()
    provider = next((p for p in PROVIDERS if re.search(rf"\b{p}\b", lowered)), None)
    m = re.search(r"\b(?:instance|unit|node)\s+([A-Za-z0-9][A-Za-z0-9_.:-]{2,127})", text)
    ident = m.group(1).rstrip(".,;") if m else None
    return provider, ident


def _command_shape(text: str) -> str | None:
    """Why the text is not a plain command, or None when it is one."""
    if _STEPS.search(text):
        return "it is a plan of several steps"
    if _CONDITION.search(text):
        return "it is conditional"
    if _HEDGE.search(text):
        return "it asks for advice, not an action"
    if _QUESTION.search(text.strip()):
        return "it is a question"
    return None


def read(text: str) -> Reading:
    """The request's intent, its stated arguments, and whether it is explicit."""
    intent = intent_of(text)
    if intent not in ACTS:
        return Reading(intent=intent, explicit=False, why="read-only by nature")
    shape = _command_shape(text)
    args: dict[str, Any] = {}
    missing: list[str] = []
    if intent == "provision":
        gpu, count, duration = gpu_of(text), count_of(text), duration_s_of(text)
        if gpu is None:
            missing.append("the GPU model (e.g. H100)")
        else:
            args["gpu_model"] = gpu
        if count is None:
            missing.append("how many units")
        else:
            args["count"] = count
        if duration is not None:
            args["duration"] = duration
        provider, _ = instance_of(text)
        if provider is not None:
            args["provider"] = provider
    elif intent == "destroy":
        provider, ident = instance_of(text)
        if provider is None:
            missing.append("the provider (vastai, ionet, ...)")
        else:
            args["provider"] = provider
        if ident is None:
            missing.append("the instance id")
        else:
            args["instance_id"] = ident
    else:
        minutes = idle_minutes_of(text)
        args["idle_threshold_minutes"] = 30.0 if minutes is None else minutes
    if shape is not None:
        return Reading(intent=intent, explicit=False, args=args, missing=missing, why=shape)
    if missing:
        return Reading(
            intent=intent,
            explicit=False,
            args=args,
            missing=missing,
            why="it leaves out " + " and ".join(missing),
        )
    return Reading(intent=intent, explicit=True, args=args, why="an explicit command")
