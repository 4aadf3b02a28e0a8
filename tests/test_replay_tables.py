"""The tables `fleet replay` prints: whole titles, whole numbers into a pipe, and no
ratio where there is nothing to compare."""

from __future__ import annotations

import io

from rich.console import Console

from tools.replay.frontier import Headline, Point, Reading
from tools.replay.report import print_headline


def _printed(heads: list[Headline]) -> str:
    out = io.StringIO()
    print_headline(heads, Console(file=out, width=80, no_color=True))
    return out.getvalue()


def test_the_headline_title_says_the_actions_goal() -> None:
    base = Point(knob=0.7, unit_hours=10.0, under_unit_s=100.0, actions=20)
    text = _printed([Headline("hpa", base, Reading(10.0, 50.0, 10.0), 5.0, 20.0)])
    assert "actions <= 1x" in " ".join(text.split())


def test_big_numbers_are_not_cut_when_the_output_is_not_a_terminal() -> None:
    base = Point(knob=0.7, unit_hours=38_816_964.67, under_unit_s=123_456_789.5, actions=1)
    ours = Reading(38_816_964.67, 98_765_432.1, 1.0)
    text = _printed([Headline("hpa", base, ours, 1.0, 99_999_999.0)])
    assert "…" not in text
    assert "38,816,964.67" in text and "98,765,432.1" in text


def test_no_actions_on_either_side_is_no_ratio() -> None:
    base = Point(knob=0.7, unit_hours=0.0, under_unit_s=0.0, actions=0)
    text = _printed([Headline("hpa", base, Reading(0.0, 0.0, 0.0), 0.0, 0.0)])
    assert "0.00x" not in text
    row = next(line for line in text.splitlines() if line.startswith("│ hpa"))
    assert row.split("│")[7].strip() == "-" and row.split("│")[8].strip() == "-"
