"""One pooled httpx client per adapter, and the HTTP failures every provider shares.

Each adapter maps what is specific to its API (Vast's 410 on a gone offer,
Lambda's error codes, ...) and leaves the rest here: timeouts, connection
errors, 429 and 5xx become Retryable; 401/403 become AuthError naming the
setting to fix. The API key only ever travels in request headers, and only to
the configured host: a redirect to another host is refused, never followed
(httpx does not follow redirects unless asked; same-origin ones are followed here).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

from services.provisioner.providers.base import (
    AuthError,
    PendingCreates,
    Permanent,
    ProviderError,
    Retryable,
    Unavailable,
    Unconfirmed,
)
from services.provisioner.providers.settings import ProviderSettings

MAX_REDIRECTS = 3
"""Same-origin redirects followed per request; a provider never needs more."""

MAX_RETRY_AFTER_S = 600.0
"""Cap on a provider's Retry-After, so a bad header cannot park a command for a day."""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), if usable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def body_text(resp: httpx.Response, limit: int = 200) -> str:
    """A short, single-line excerpt of a response body for error messages."""
    text = resp.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def json_or_none(resp: httpx.Response) -> Any:
    """The JSON body, or None when the body is empty or not JSON."""
    try:
        return resp.json()
    except ValueError:
        return None


class ProviderHttp:
    """An httpx.AsyncClient bound to one provider, raising our typed errors."""

    def __init__(
        self,
        settings: ProviderSettings,
        auth_headers: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.provider = settings.name
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={"Accept": "application/json", **auth_headers},
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            transport=transport,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        passthrough: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request; raise Retryable/AuthError for the shared failures, else return it.

        The caller inspects 4xx statuses that mean something specific at its provider, and
        gets back any status in `passthrough` unmapped (RunPod's 403 on a pod create means
        "not this GPU pool", not "bad key").
        """
        if not self.settings.base_url and not url.startswith("http"):
            raise Unavailable(self.provider, f"no base URL; set {self.settings.url_hint()}")
        resp = await self._send(method, url, json, params)
        for _ in range(MAX_REDIRECTS):
            if not resp.is_redirect:
                break
            target = resp.next_request.url if resp.next_request else None
            if target is None or not same_origin(resp.request.url, target):
                raise Permanent(
                    self.provider,
                    f"{method} {url} answered HTTP {resp.status_code} redirecting to "
                    f"{target.host if target else 'nowhere'}; not followed, so the API key "
                    f"does not travel to another host. Set {self.settings.url_hint()} to the "
                    "provider's current API root",
                )
            resp = await self._send(method, str(target), json, None)
        status = resp.status_code
        if status in passthrough:
            return resp
        if status == 429:
            raise Retryable(
                self.provider,
                f"rate limited on {method} {url}: {body_text(resp) or 'HTTP 429'}",
                after_s=retry_after_s(resp.headers.get("Retry-After")),
            )
        if status >= 500:
            raise Retryable(
                self.provider,
                f"HTTP {status} on {method} {url}: {body_text(resp)}",
                after_s=retry_after_s(resp.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise self.auth_error(status)
        return resp

    async def _send(
        self, method: str, url: str, json: Any, params: Mapping[str, Any] | None
    ) -> httpx.Response:
        try:
            return await self._client.request(method, url, json=json, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Retryable(self.provider, f"{method} {url} failed: {type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            raise Unconfirmed(
                self.provider, f"{method} {url} timed out after {self.settings.timeout_s}s"
            ) from exc
        except httpx.TransportError as exc:
            raise Unconfirmed(
                self.provider, f"{method} {url} failed: {type(exc).__name__}"
            ) from exc

    def auth_error(self, status: int | str) -> AuthError:
        """The error for refused credentials, naming where the key came from and what to set."""
        came_from = f" from {self.settings.key_source}" if self.settings.key_source else ""
        return AuthError(
            self.provider,
            f"the API key{came_from} was refused ({status})",
            setting=self.settings.key_hint(),
        )

    def unexpected(self, resp: httpx.Response, what: str) -> ProviderError:
        """A ProviderError for a status the adapter has no better mapping for."""
        return ProviderError(
            self.provider, f"{what}: unexpected HTTP {resp.status_code}: {body_text(resp)}"
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()


class HttpAdapter:
    """What every HTTP adapter shares: settings, one pooled client, availability, close."""

    name: str = ""
    """Set by each adapter; also the provider name on offers and units."""

    def __init__(
        self, settings: ProviderSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.pending = PendingCreates(settings.create_confirm_s)
        """Creates whose answer was lost, so a retry waits for them instead of renting twice."""
        self._http: ProviderHttp | None = None
        if settings.configured:
            self._http = ProviderHttp(settings, self.auth_headers(settings), transport)

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        """Headers that carry the credentials (Bearer by default)."""
        return {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    @property
    def available(self) -> bool:
        """True when configured (URL and, where needed, a key); False is not an error."""
        return self._http is not None

    @property
    def http(self) -> ProviderHttp:
        """The client; raises Unavailable naming the setting when not configured."""
        if self._http is None:
            if not self.settings.base_url:
                raise Unavailable(self.name, f"not configured; set {self.settings.url_hint()}")
            raise Unavailable(self.name, f"no API key; set {self.settings.key_hint()}")
        return self._http

    async def close(self) -> None:
        """Release pooled connections."""
        if self._http is not None:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """True when `b` is on the same scheme, host and port as `a` (a redirect safe to follow
    with the key: the credentials stay with the host the operator configured)."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def as_float(value: Any, default: float = 0.0) -> float:
    """A finite float from a JSON number or numeric string ("0.44"); `default` otherwise."""
    if isinstance(value, bool):
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    if out != out or out in (float("inf"), float("-inf")):
        return default
    return out


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty dict (for tolerant reads)."""
    return value if isinstance(value, dict) else {}
