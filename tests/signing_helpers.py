"""The test suite's signing keys, and messages signed with them as their real authors
would sign them: the cost-guard's verdicts, the provisioner's unit events, an
operator's decisions. Services under test get these keys through `signing(...)`.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import DecideRequest, Verdict
from contracts.events import UnitEvent
from services.kit.service import encode
from services.kit.signing import Signer, new_seed

SEEDS = {
    name: new_seed() for name in ("costguard", "provisioner", "watcher", "operator", "intruder")
}
"""One key per role for the whole session; `intruder` is listed nowhere."""
SIGNERS = {name: Signer(seed) for name, seed in SEEDS.items()}
COSTGUARD, PROVISIONER, WATCHER, OPERATOR, INTRUDER = (
    SIGNERS["costguard"],
    SIGNERS["provisioner"],
    SIGNERS["watcher"],
    SIGNERS["operator"],
    SIGNERS["intruder"],
)
OPERATOR_NAME = "alice"
HELPER_FENCE = 0
"""The fence of verdicts the tests publish as the cost-guard: below any real lease
revision, so a real cost-guard started later in the same test still wins."""


def signing(own: str | None = None) -> dict[str, Any]:
    """The `[signing]` table of a service under test; `own` names whose seed it signs with
    (a service that signs nothing, such as the scaler, gets the public keys only)."""
    table: dict[str, Any] = {
        "costguard_key": COSTGUARD.public_key,
        "provisioner_key": PROVISIONER.public_key,
        "watcher_key": WATCHER.public_key,
        "operators": {OPERATOR.public_key: OPERATOR_NAME},
    }
    if own in SEEDS:
        table["seed"] = SEEDS[own].decode()
    return table


def signed_verdict(verdict: Verdict, fence: int = HELPER_FENCE) -> tuple[bytes, dict[str, str]]:
    """The body and headers of `verdict` on its subject, signed as the cost-guard signs."""
    body = encode(verdict)
    return body, COSTGUARD.sign(subjects.budget(verdict.decision), body, fence)


def signed_event(event: UnitEvent, signer: Signer = PROVISIONER) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a unit event, signed (by the provisioner unless told)."""
    body = encode(event)
    return body, signer.sign(subjects.unit(event.pool, event.unit), body)


async def publish_event(nc: Client, event: UnitEvent, signer: Signer = PROVISIONER) -> None:
    """Publish `event` to FLEET_EVENTS signed, as the provisioner does."""
    body, headers = signed_event(event, signer)
    await nc.jetstream().publish(subjects.unit(event.pool, event.unit), body, headers=headers)


def signed_decision(
    request_id: str, decision: DecideRequest, signer: Signer = OPERATOR
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an operator's decision on `request_id`."""
    body = encode(decision)
    return body, signer.sign(subjects.budget_decide(request_id), body)


def signing_env(own: str | None = None) -> dict[str, str]:
    """`signing(own)` as the FLEET_SIGNING__* variables of a service run as a process."""
    table = signing(own)
    operators = ", ".join(f'"{k}" = "{v}"' for k, v in table["operators"].items())
    env = {
        "FLEET_SIGNING__COSTGUARD_KEY": table["costguard_key"],
        "FLEET_SIGNING__PROVISIONER_KEY": table["provisioner_key"],
        "FLEET_SIGNING__WATCHER_KEY": table["watcher_key"],
        "FLEET_SIGNING__OPERATORS": f"{{ {operators} }}",
    }
    if "seed" in table:
        env["FLEET_SIGNING__SEED"] = table["seed"]
    return env
