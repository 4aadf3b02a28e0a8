"""What `fleet offers` and `fleet place` show: offers or a placement, and each provider's answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from contracts.offers import Offer, Placement

State = Literal["ok", "unavailable", "auth", "breaker", "error"]


@dataclass(frozen=True)
class ProviderStatus:
    """How one provider answered the offers query."""

    state: State
    detail: str = ""
    """Why it is not `ok`, naming the setting to fix where there is one."""

    def to_json(self) -> dict[str, str]:
        """The JSON form: {"state", "detail"}."""
        return {"state": self.state, "detail": self.detail}


@dataclass
class Report:
    """Offers (cheapest first) or a placement, with where they came from."""

    source: Literal["provisioner", "direct"]
    offers: list[Offer] = field(default_factory=list)
    providers: dict[str, ProviderStatus] = field(default_factory=dict)
    placement: Placement | None = None

    @property
    def auth_failures(self) -> dict[str, ProviderStatus]:
        """Providers whose credentials were refused: a setting to fix."""
        return {n: s for n, s in self.providers.items() if s.state == "auth"}

    @property
    def unusable(self) -> set[str]:
        """Providers that returned no offers because they could not be asked."""
        return {n for n, s in self.providers.items() if s.state != "ok"}

    def to_json(self) -> dict[str, Any]:
        """The `--json` document."""
        doc: dict[str, Any] = {
            "source": self.source,
            "providers": {n: s.to_json() for n, s in sorted(self.providers.items())},
        }
        if self.placement is not None:
            doc["placement"] = msgspec.to_builtins(self.placement)
        else:
            doc["offers"] = msgspec.to_builtins(self.offers)
            doc["count"] = len(self.offers)
        return doc


def status_from_text(text: str) -> ProviderStatus:
    """A ProviderStatus from the provisioner's one-line status (`ok`, `open`, `error: ...`)."""
    low = text.lower()
    if low in ("ok", "closed"):
        return ProviderStatus("ok")
    if low.startswith("unavailable"):
        return ProviderStatus("unavailable", text)
    if low in ("open", "half_open"):
        return ProviderStatus("breaker", f"circuit breaker {low.replace('_', '-')}")
    if low.startswith("auth"):
        return ProviderStatus("auth", text.split(":", 1)[-1].strip())
    return ProviderStatus("error", text.removeprefix("error:").strip())
