"""Back off replacing units that keep dying right after they start.

A unit that fails soon after it was created is usually not bad luck but a bad
image, a wrong setting or a broken host: replacing it at once, forever, only
spends money in a tight loop (Kubernetes' CrashLoopBackOff exists for the same
reason). Pure: the caller passes the times and acts on the delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CrashLoop:
    """Per pool, how many units in a row failed early, and how long to wait."""

    early_s: float = 120.0
    """A unit that fails within this many seconds of its creation failed early."""
    base_s: float = 5.0
    """Delay before the second early failure's replacement; doubles after each."""
    max_s: float = 300.0
    """Longest delay between replacements."""
    streak: dict[str, int] = field(default_factory=dict)

    def failed(self, pool: str, created_ts: float, now: float) -> float:
        """Record a failure; seconds to wait before asking for a replacement (0: now)."""
        if created_ts <= 0 or now - created_ts >= self.early_s:
            self.streak[pool] = 0
            return 0.0
        n = self.streak.get(pool, 0) + 1
        self.streak[pool] = n
        if n <= 1:
            return 0.0
        return float(min(self.max_s, self.base_s * 2 ** (n - 2)))
