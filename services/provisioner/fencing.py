"""Which approved verdicts the provisioner carries out: signed by the cost-guard, dated
now or earlier, and under a fencing token that was current when the verdict entered
the stream.

The cost-guard signs each verdict with the revision at which it took its lease
in `fleet_leases` (its fence). KV revisions only grow, so a cost-guard that takes
over after another holds a higher fence than anything its predecessor can sign.
"Current" is judged by stream position, not by arrival: the provisioner keeps,
for each fence it has seen, the first FLEET_CMDS sequence it was seen at. A
verdict whose fence is lower than one already seen at an earlier sequence was
stored after a newer holder had spoken, so it comes from a holder that had lost
its lease (or is a replay) and is refused. A verdict stored before the newer
holder's first one is still carried out even when it is delivered late (a
redelivery after a retry): it was current when it was issued.

Pure: `admit` takes the marks and returns the new marks and the reason to
refuse, if any; the service stores the marks and dead-letters the refusal.
"""

from __future__ import annotations

import msgspec

from contracts.base import clock_skew_problem
from contracts.signatures import NO_FENCE

MAX_MARKS = 64
"""Fences remembered; one per cost-guard takeover, so far more than a fleet sees."""


class Mark(msgspec.Struct, frozen=True, array_like=True):
    """A fence, and the first stream sequence a verdict carrying it was seen at."""

    fence: int
    first_seq: int


class Marks(msgspec.Struct, frozen=True, kw_only=True):
    """The fences seen from one cost-guard key, newest last."""

    signer: str = ""
    marks: tuple[Mark, ...] = ()


def admit(marks: Marks, fence: int, seq: int) -> tuple[Marks, str | None]:
    """The marks after a signed verdict with `fence` at stream sequence `seq`, and why it
    must not be carried out (None when it may)."""
    if fence == NO_FENCE:
        return marks, "the verdict carries no fencing token (Fleet-Fence)"
    newer = [m for m in marks.marks if m.fence > fence and m.first_seq < seq]
    if newer:
        top = max(newer, key=lambda m: m.fence)
        return marks, (
            f"fencing token {fence} is stale: fence {top.fence} was already in force at stream "
            f"sequence {top.first_seq}, before this verdict ({seq}); it comes from a cost-guard "
            "that had lost its lease, or it is a replay"
        )
    known = {m.fence: m for m in marks.marks}
    mark = known.get(fence)
    if mark is not None and mark.first_seq <= seq:
        return marks, None
    known[fence] = Mark(fence, seq)
    kept = sorted(known.values(), key=lambda m: m.fence)[-MAX_MARKS:]
    return msgspec.structs.replace(marks, marks=tuple(kept)), None


def verdict_time_problem(ts: float, now: float) -> str | None:
    """Why a verdict dated `ts` is not believed at `now` (the contract's clock skew)."""
    skewed = clock_skew_problem(ts, now)
    return None if skewed is None else f"the verdict's {skewed}"
