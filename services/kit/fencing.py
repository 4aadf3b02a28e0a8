"""Which verdicts a reader believes: signed by the cost-guard, dated now or earlier, and
under a fencing token that was current when the verdict entered the stream. The
provisioner carries out only such verdicts; the scaler sets pins only from them.

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

`admit` is pure: it takes the marks and returns the new marks and the reason to
refuse, if any. `VerdictGate` is its thin I/O, shared by every reader of verdicts:
it verifies the signature (services.kit.signing), keeps the marks in the reader's
store, and says why a verdict is refused; the reader dead-letters it.
"""

from __future__ import annotations

import asyncio

import msgspec

from contracts.base import clock_skew_problem
from contracts.signatures import NO_FENCE
from services.kit.config import SigningSettings
from services.kit.messages import Delivery, encode
from services.kit.signing import SignatureError, public_key_setting, verify
from services.kit.store import Store

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


FENCES_KEY = "verdict_fences"
"""Store key of a reader's fencing marks."""


class VerdictGate:
    """One reader's check of verdicts: the cost-guard's signature, the clock, the fence."""

    def __init__(self, settings: SigningSettings, store: Store, why: str) -> None:
        """`why` says what the reader does with verdicts, for the error when
        `[signing] costguard_key` is missing (the reader then does not start)."""
        key = public_key_setting(settings, "costguard_key", why)
        self.keys = {key: "costguard"}
        self.marks = Marks()
        self._store = store
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """The marks this reader stored before a restart."""
        raw = await self._store.get(FENCES_KEY)
        self.marks = msgspec.json.decode(raw, type=Marks) if raw else Marks()

    async def refusal(self, ts: float, d: Delivery, now: float) -> str | None:
        """Why the verdict dated `ts` in `d` is not believed at `now`: not signed by the
        cost-guard, dated ahead, or under a stale fence; None when it is. The marks are
        stored before the answer, so a restarted reader judges the same way."""
        try:
            signed = verify(d.subject, d.data, d.headers, self.keys)
        except SignatureError as exc:
            return f"not signed by the cost-guard: {exc}"
        skewed = verdict_time_problem(ts, now)
        if skewed is not None:
            return skewed
        async with self._lock:
            marks = (
                self.marks if self.marks.signer == signed.signer else Marks(signer=signed.signer)
            )
            marks, stale = admit(marks, signed.fence, d.stream_seq or 0)
            if marks != self.marks:
                await self._store.put(FENCES_KEY, encode(marks))
                self.marks = marks
        return stale
