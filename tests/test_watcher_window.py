"""The watcher's window spans whole ticks whatever their jitter, so a burst shows in the
first PoolMetrics after it instead of being averaged with the tick before."""

from __future__ import annotations

from services.watcher.windows import PoolSample, PoolWindow


def test_a_one_tick_window_shows_a_step_at_the_first_tick_even_when_ticks_jitter() -> None:
    window = PoolWindow()
    t = 100.0
    for _ in range(5):
        t += 1.0
        window.add(PoolSample(t=t, dt=1.0, ready=4, capacity=32, inflight=16), window_s=1.0)
    t += 0.999  # this tick fired a millisecond early
    window.add(PoolSample(t=t, dt=0.999, ready=4, capacity=32, inflight=32), window_s=1.0)
    assert window.metrics("p").inflight == 32


def test_a_three_tick_window_averages_three_ticks() -> None:
    window = PoolWindow()
    for i, load in enumerate([10, 10, 10, 40, 40]):
        window.add(PoolSample(t=float(i), dt=1.0, capacity=100, inflight=load), window_s=3.0)
    assert window.metrics("p").inflight == 30
