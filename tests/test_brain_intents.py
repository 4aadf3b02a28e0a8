"""The rule policy's classifier on the guide's texts and paraphrases (tests/data):
the intent, whether it is explicit, and the arguments it states, never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.brain.intents import ACTS, read

CASES = json.loads((Path(__file__).parent / "data" / "rule_intents.json").read_text())
ALL: list[dict[str, Any]] = CASES["guide"] + CASES["paraphrases"]


def test_the_table_has_the_guides_texts_and_twenty_paraphrases() -> None:
    assert len(CASES["guide"]) == 8 and len(CASES["paraphrases"]) >= 20


@pytest.mark.parametrize("case", ALL, ids=[c["text"][:40] for c in ALL])
def test_each_request_reads_as_its_expected_intent(case: dict[str, Any]) -> None:
    reading = read(case["text"])
    assert (reading.intent, reading.explicit) == (case["intent"], case["explicit"]), reading.why
    if "args" in case:
        assert reading.args == case["args"]


def test_none_of_the_guides_workflows_is_an_explicit_command() -> None:
    # Every one has a condition, a plan of steps or a question: none may act as it stands.
    assert not any(read(c["text"]).explicit for c in CASES["guide"])


def test_only_commands_that_add_or_remove_units_are_ever_explicit() -> None:
    assert {read(c["text"]).intent for c in ALL if read(c["text"]).explicit} <= ACTS


def test_a_missing_argument_is_named_not_guessed() -> None:
    terminate = read("Terminate GPU instance C.998877")
    assert not terminate.explicit and terminate.missing == ["the provider (vastai, ionet, ...)"]
    rent = read("Rent some GPUs for the weekend")
    assert "the GPU model (e.g. H100)" in rent.missing and "how many units" in rent.missing
