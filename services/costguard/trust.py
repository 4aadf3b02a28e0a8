"""Whom the cost-guard believes: the provisioner's signed unit events and the operators'
signed decisions; and the key it signs its own verdicts with.

Anyone who can publish on the bus could otherwise end a unit in the ledger (its
burn falls and more is approved than the cap allows) or approve a held request
in any operator's name. Both are refused here unless signed by a key from
`[signing]` (docs/adr/0012-signed-messages.md). The checks return what is wrong
instead of acting, so the service decides how to refuse (dead letter, error
reply, alert) and the rules are tested with plain values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.base import clock_skew_problem
from contracts.events import BILLED_STATES, TERMINAL_STATES, Alert, UnitEvent
from services.kit.config import SigningSettings
from services.kit.messages import Delivery
from services.kit.signing import (
    Authors,
    SignatureError,
    Signer,
    operator_keys,
    own_signer,
    public_key_setting,
    trusted_keys,
    verify,
)

PROVISIONER = "provisioner"


@dataclass(frozen=True)
class Trust:
    """The cost-guard's own signer and the keys it believes."""

    signer: Signer
    provisioner: dict[str, str]
    """The provisioner's public key -> "provisioner"."""
    operators: dict[str, str]
    """Operators' public keys -> their names."""
    watcher: dict[str, str]
    """The watcher's public key -> "watcher", if configured: its failure reports are the
    provisioner's to act on, and the provisioner's own signed event follows."""

    @classmethod
    def from_settings(cls, s: SigningSettings) -> Trust:
        """From `[signing]`; a ConfigError naming the setting when a key is missing or bad."""
        provisioner = public_key_setting(
            s, "provisioner_key", "the ledger bills only from unit events the provisioner signed"
        )
        return cls(
            signer=own_signer(s, "cost-guard"),
            provisioner={provisioner: PROVISIONER},
            operators=operator_keys(s),
            watcher=trusted_keys(s, "watcher"),
        )

    def watcher_report(self, d: Delivery) -> bool:
        """True for a unit event the watcher signed (a failure report): not a forgery, and
        not the ledger's to act on."""
        return bool(self.watcher) and Authors(self.watcher).signed(d)

    def unit_event_problem(self, d: Delivery) -> str | None:
        """Why a unit event cannot move the ledger (not signed by the provisioner), or None."""
        try:
            verify(d.subject, d.data, d.headers, self.provisioner)
        except SignatureError as exc:
            return f"unit event not signed by the provisioner: {exc}"
        return None

    def operator(self, d: Delivery, ts: float, now: float) -> str:
        """The name of the operator who signed the decision in `d`; raises Refused saying
        why when nobody listed in `[signing] operators` did, or it is dated ahead beyond
        the contract's clock skew. A signed decision sent again later decides nothing: the
        signature covers the request id (the subject), and a request is decided once."""
        if not self.operators:
            raise Refused(
                "no operator may decide: [signing] operators lists no key; add your public "
                "key (`fleet keys public SEEDFILE`) with your name"
            )
        try:
            signed = verify(d.subject, d.data, d.headers, self.operators)
        except SignatureError as exc:
            raise Refused(
                f"decision refused: {exc}; sign it with an operator key listed in [signing] "
                "operators (`fleet approve` reads FLEET_OPERATOR_SEED_FILE, else "
                ".fleet/keys/operator.nk)"
            ) from None
        ahead = clock_skew_problem(ts, now)
        if ahead is not None:
            raise Refused(f"decision refused: {ahead}")
        return signed.name


class Refused(Exception):
    """A decision that is not believed; the message says why and what to do."""


def should_investigate(event: UnitEvent, billed_units: Mapping[str, object]) -> bool:
    """An unsigned end of a unit the ledger bills is checked with the provisioner before
    anyone is alarmed: the watcher's failure reports carry its own key, not the
    provisioner's, and the provisioner confirms them with a signed event of its own
    moments later."""
    return event.state in TERMINAL_STATES and f"{event.pool}/{event.unit}" in billed_units


def _refused(event: UnitEvent, message: str) -> Alert:
    """A critical `unit_event_refused` alert about `event`'s unit."""
    return Alert(
        kind="unit_event_refused",
        severity="critical",
        pool=event.pool,
        unit=event.unit,
        message=message[:4000],
    )


def forged_event_alert(event: UnitEvent, problem: str) -> Alert:
    """The alert for an unsigned unit event that is not the end of a billed unit."""
    return _refused(
        event,
        f"refused a `{event.state}` event for {event.pool}/{event.unit}: {problem}. "
        "The ledger is unchanged; someone other than the provisioner publishes on "
        "fleet.unit.> (see fleet.dead.fleet.unit.>)",
    )


def investigation_alert(
    event: UnitEvent, problem: str, still_billed: bool, provisioner: dict[str, object] | None
) -> Alert | None:
    """What to say once an unsigned end of a billed unit has been checked.

    `still_billed`: the ledger still bills the unit (no signed end has come since);
    `provisioner`: the provisioner's row for the unit, {} when it does not list it,
    None when it did not answer. None: nothing to say, the provisioner confirmed the end."""
    if not still_billed:
        return None
    state = str(provisioner.get("state", "")) if provisioner else ""
    if provisioner is None:
        found = "the provisioner did not answer, so the end is not believed"
    elif state in BILLED_STATES:
        price = provisioner.get("usd_per_hour", 0.0)
        rate = float(price) if isinstance(price, int | float) and math.isfinite(price) else 0.0
        found = f"the provisioner still bills it ({state}, ${rate:.2f}/h)"
    elif provisioner:
        return None  # it has ended it; its signed event is on its way
    else:
        found = "the provisioner does not list it, yet sent no signed end"
    return _refused(
        event,
        f"refused an unsigned `{event.state}` event for {event.pool}/{event.unit}: {found}; "
        f"the ledger keeps billing it. {problem}",
    )
