"""Metrics an operator pages on: consumer lag per durable, breaker state per provider,
crash-loop streaks per pool."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry, generate_latest

from contracts import subjects
from contracts.events import UnitEvent
from services.kit.bus import ensure_streams
from services.kit.lag import ConsumerLag
from services.kit.service import encode
from services.provisioner.breaker import Breaker
from services.provisioner.crashloop import CrashLoop
from services.provisioner.gauges import ProvisionerGauges


async def test_lag_counts_what_waits_for_the_services_own_durables(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    for name in ("lagtest-units", "other-units"):
        await js.add_consumer(
            "FLEET_EVENTS",
            ConsumerConfig(
                durable_name=name, ack_policy=AckPolicy.EXPLICIT, filter_subject="fleet.unit.>"
            ),
        )
    for i in range(3):
        event = UnitEvent(pool="p", unit=f"u{i}", state="ready", provider="sim")
        await js.publish(subjects.unit("p", f"u{i}"), encode(event))
    psub = await js.pull_subscribe("fleet.unit.>", durable="lagtest-units")
    [taken] = await psub.fetch(1, timeout=5)  # delivered, not acked

    registry = CollectorRegistry()
    lag = ConsumerLag(registry, "lagtest")
    assert await lag.sample(js) == {"lagtest-units": 2}
    text = generate_latest(registry).decode()
    labels = 'durable="lagtest-units",service="lagtest",stream="FLEET_EVENTS"'
    assert f"fleet_consumer_pending_messages{{{labels}}} 2.0" in text
    assert f"fleet_consumer_ack_pending_messages{{{labels}}} 1.0" in text
    assert "other-units" not in text, "another service's durable is its own to report"

    await taken.ack()
    for msg in await psub.fetch(2, timeout=5):
        await msg.ack()
    assert await lag.sample(js) == {"lagtest-units": 0}
    text = generate_latest(registry).decode()
    assert f"fleet_consumer_ack_pending_messages{{{labels}}} 0.0" in text


def test_breaker_state_and_crash_loops_read_the_live_objects() -> None:
    breakers = {"vastai": Breaker(), "ionet": Breaker()}
    crashloop = CrashLoop()
    registry = CollectorRegistry()
    registry.register(ProvisionerGauges(breakers, crashloop))
    text = generate_latest(registry).decode()
    assert 'fleet_provider_breaker_state{provider="vastai",state="closed"} 1.0' in text
    assert 'fleet_provider_breaker_state{provider="vastai",state="open"} 0.0' in text

    breakers["vastai"] = Breaker(state="open", failures=5, opened_ts=100.0)
    crashloop.failed("h100", created_ts=100.0, now=110.0)
    crashloop.failed("h100", created_ts=120.0, now=130.0)
    text = generate_latest(registry).decode()
    assert 'fleet_provider_breaker_state{provider="vastai",state="open"} 1.0' in text
    assert 'fleet_provider_breaker_state{provider="ionet",state="open"} 0.0' in text
    assert 'fleet_pool_crash_loop_streak{pool="h100"} 2.0' in text
