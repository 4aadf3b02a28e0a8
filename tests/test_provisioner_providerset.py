"""ProviderSet's breaker: what counts as a provider being down."""

from __future__ import annotations

import pytest

from services.provisioner.breaker import BreakerPolicy
from services.provisioner.providers.base import Provider, Retryable
from services.provisioner.providerset import BreakerOpen, ProviderSet


class WritesDown:
    """A provider whose reads answer and whose creates all fail with a 5xx."""

    name = "flaky"
    available = True

    async def list(self) -> list:
        return []

    async def create(self, *_a: object) -> list:
        raise Retryable("flaky", "HTTP 503 on PUT /asks/1/")


def providers() -> ProviderSet:
    return ProviderSet(
        {"flaky": WritesDown()},  # type: ignore[dict-item]
        BreakerPolicy(failure_threshold=3, cooldown_s=60),
        attempts=1,
        base_s=0.0,
        max_s=0.0,
    )


async def list_units(p: Provider) -> list:
    return await p.list()


async def create_one(p: Provider) -> list:
    return await p.create(None, 1, "k")  # type: ignore[arg-type]


async def test_reads_that_work_do_not_hide_creates_that_fail() -> None:
    ps = providers()
    for _ in range(2):
        with pytest.raises(Retryable):
            await ps.call("flaky", create_one)
        await ps.call("flaky", list_units, read_only=True)  # the reconcile timer's list
    assert ps.breakers["flaky"].state == "closed"
    with pytest.raises(Retryable):
        await ps.call("flaky", create_one)
    assert ps.breakers["flaky"].state == "open"
    with pytest.raises(BreakerOpen):
        await ps.call("flaky", create_one)


async def test_a_write_that_works_resets_the_count() -> None:
    ps = providers()
    with pytest.raises(Retryable):
        await ps.call("flaky", create_one)
    await ps.call("flaky", list_units)  # not read-only: counts as the provider working
    assert ps.breakers["flaky"].failures == 0
