"""The gateway passes on only what the cost-guard and the provisioner signed: a
forged unit event does not answer agents.create for an agent's runner, and a
forged verdict does not answer a provision (on a real nats-server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.api.replies import AgentSpec, CommandAnswer
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import UnitEvent
from services.gateway.runners import AgentRunners
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import SigningSettings, load_settings
from services.kit.service import encode
from services.kit.signing import Authors, trusted_keys
from tests.fleet_helpers import kit
from tests.signing_helpers import INTRUDER, PROVISIONER, signed_event, signed_verdict, signing

SPEC = AgentSpec(name="solo", user="fay", system_prompt="p", cores=2, runtime="local")


def event(pool: str, state: str, reason: str) -> UnitEvent:
    return UnitEvent(
        ts=1.0,
        pool=pool,
        unit="u1",
        state=state,
        provider="local",
        reason=reason,  # type: ignore[arg-type]
    )


async def test_an_agents_runner_is_ready_or_failed_only_on_the_provisioners_word(
    nc: Client,
) -> None:
    async def command(cmd: ProvisionRequest | ReleaseRequest, _wait: float) -> CommandAnswer:
        # Someone who can publish unit events says the runner failed, unsigned and
        # then signed by a key nobody listed; then the provisioner says it is ready.
        forged = event(cmd.pool, "failed", "forged: no node")
        await nc.publish(subjects.unit(cmd.pool, "u1"), encode(forged))
        body, headers = signed_event(forged, INTRUDER)
        await nc.publish(subjects.unit(cmd.pool, "u1"), body, headers=headers)
        body, headers = signed_event(event(cmd.pool, "ready", "booted"))
        await nc.publish(subjects.unit(cmd.pool, "u1"), body, headers=headers)
        return CommandAnswer(id=cmd.id, decision="approved", reason="ok", request={})

    async def ask(_op: str, _body: Any) -> dict[str, Any]:
        return {}

    keys = trusted_keys(SigningSettings(provisioner_key=PROVISIONER.public_key), "provisioner")
    runners = AgentRunners(nc, command, ask, "local", 5.0, Authors(keys))
    runner = await runners.start(SPEC, "fay")
    assert (runner.state, runner.reason) == ("ready", "booted")

    # Without keys (a gateway started by hand) the first word is believed, as before.
    believing = AgentRunners(nc, command, ask, "local", 5.0)
    try:
        await believing.start(SPEC, "fay")
    except Exception as exc:  # the forged failure undoes the create
        assert "forged: no node" in str(exc)
    else:
        raise AssertionError("an unkeyed gateway believed no event")


async def test_a_forged_verdict_does_not_answer_a_provision(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10.0}}
    gw = Gateway(
        load_settings(
            GatewaySettings,
            env={},
            overrides=kit(tmp_path, "gw", pools=pools, signing=signing()),
        ),
        nats_url=nats_url,
    )
    await gw.start()
    try:
        # No cost-guard runs: we answer each command the gateway publishes, first
        # with a forged approval (unsigned, then signed by an intruder), then with
        # the cost-guard's signed denial.
        async def on_cmd(msg: Any) -> None:
            cmd = msgspec.json.decode(msg.data)
            forged = Verdict(id=cmd["id"], decision="approved", request=cmd, command=cmd)
            await nc.publish(subjects.budget("approved"), encode(forged))
            _, headers = signed_verdict(forged)
            headers = {**headers, "Fleet-Signer": INTRUDER.public_key}
            await nc.publish(subjects.budget("approved"), encode(forged), headers=headers)
            denied = Verdict(id=cmd["id"], decision="denied", request=cmd, reason="over budget")
            body, headers = signed_verdict(denied)
            await nc.publish(subjects.budget("denied"), body, headers=headers)

        sub = await nc.subscribe(subjects.PROVISION_REQUESTED, cb=on_cmd)
        call = {"pool": "gpu", "count": 1, "requester": "t", "reason": "test", "wait_s": 5}
        reply = await nc.request(subjects.api("provision"), encode(call), timeout=10)
        answer = msgspec.json.decode(reply.data)
        await sub.unsubscribe()
        assert answer["decision"] == "denied", answer
        assert gw.metrics.counts["verdicts_refused"] == 2
    finally:
        await gw.stop()
