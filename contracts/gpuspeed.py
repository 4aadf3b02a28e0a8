"""How fast each GPU model works, relative to a reference card: one number per model.

A job's `est_s` is H100 seconds, the simulated units run a job for `est_s /
speed`, and the batch planner turns "18 s per item on an RTX 4090" into the
time on every other model with the same numbers, so a plan made here is what
the sim then does. The factors are rounded throughput ratios for fp16
inference (image diffusion and transformer serving), taken from public
benchmarks:

- Lambda, "GPU Benchmarks for Deep Learning" (lambdalabs.com/gpu-benchmarks):
  relative throughput of H100, A100, L40S, A6000, RTX 4090/3090, A10 and T4;
- MLCommons, MLPerf Inference v4.0 datacenter results (mlcommons.org):
  H200, B200, MI300X and Gaudi2 against H100 on the same models;
- Tom's Hardware, "Stable Diffusion Benchmarked: Which GPU Runs AI Fastest"
  (tomshardware.com/news/stable-diffusion-gpu-benchmarks): consumer cards
  (RTX 4090, 3090, RX 7900 XTX) on Stable Diffusion images per minute.

They are planning figures, not promises: a workload bound by memory or the
CPU moves differently. Measure your own item time on one card and name that
card as the reference (`fleet batch plan --per-item-s S --ref-gpu MODEL`).
"""

from __future__ import annotations

REFERENCE_GPU = "H100"
"""The model whose speed is 1.0; a job's `est_s` is seconds on it."""

SPEED: dict[str, float] = {
    "B200": 2.2,
    "H200": 1.3,
    "H100": 1.0,
    "MI300X": 1.1,
    "A100-80GB": 0.6,
    "A100-40GB": 0.55,
    "Gaudi2": 0.55,
    "L40S": 0.45,
    "RTX4090": 0.4,
    "A6000": 0.3,
    "RX7900XTX": 0.25,
    "RTX3090": 0.25,
    "A10": 0.2,
    "L4": 0.15,
    "M2-Ultra": 0.12,
    "T4": 0.08,
    "CPU": 0.02,
}
"""Throughput relative to an H100 (see the module docstring for the sources)."""

UNKNOWN_SPEED = 0.3
"""What the simulated units assume for a model not in `SPEED` (an A6000-class card)."""


def speed_of(gpu_model: str) -> float:
    """A GPU model's speed relative to an H100; `UNKNOWN_SPEED` when not in the table."""
    return SPEED.get(gpu_model, UNKNOWN_SPEED)


def known_speed(gpu_model: str) -> float | None:
    """A GPU model's speed relative to an H100, or None when the table has no figure
    (a planner must then say so rather than guess)."""
    return SPEED.get(gpu_model)


__all__ = ["REFERENCE_GPU", "SPEED", "UNKNOWN_SPEED", "known_speed", "speed_of"]
