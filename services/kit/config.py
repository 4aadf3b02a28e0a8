"""Typed settings from fleet.toml and FLEET_* environment variables.

Every key of fleet.toml can be overridden by `FLEET_<SECTION>__<KEY>` (nested
keys join with `__`, e.g. `FLEET_POOLS__H100__MAX=8`). Values from the
environment are parsed as TOML literals when they are ones (`8`, `true`,
`["a","b"]`) and taken as strings otherwise. A bad value fails at start with
the key's name and what was expected; an unknown key in any table (a typo such
as `budget.daly_usd`) fails too, naming the closest valid key, because a key
that is silently ignored is a setting the operator believes is in force.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from services.kit.errors import ConfigError
from services.kit.settings_keys import KeyPath, field_types, given_at, pinpoint, unknown_key

T = TypeVar("T")

ENV_PREFIX = "FLEET_"
DEFAULT_CONFIG = "fleet.toml"
STATE_DIR = ".fleet"
URL_FILE = "nats.url"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

_NON_SETTINGS = {"FLEET_CONFIG", "FLEET_NATS_URL"}


class NatsSettings(msgspec.Struct, kw_only=True):
    """How to reach NATS."""

    url: str = ""
    """Server URL(s), comma-separated; empty means: FLEET_NATS_URL, then .fleet/nats.url."""
    connect_timeout_s: float = 2.0
    """Per-attempt connect timeout; short so a start-up race retries quickly."""
    connect_deadline_s: float = 60.0
    """Give up starting when NATS cannot be reached for this long."""
    reconnect_wait_s: float = 0.5
    """Pause between reconnect attempts once connected; NATS clusters fail over fast."""
    replicas: int = 1
    """JetStream stream replicas: 1 on one machine, 3 on a cluster."""
    creds_file: str = ""
    """A NATS credentials file (JWT and seed) for an operator/JWT-secured server; empty for none."""
    nkeys_seed: str = ""
    """A file holding this identity's NATS nkey seed (`SU...`), as `fleet up --secure` and
    `fleet init --secure` write them under .fleet/creds/; empty for none. The server knows
    only the public key, so the file is the identity: keep it 0600."""
    inbox_prefix: str = ""
    """Where replies to this identity go (`_INBOX.<identity>`); a secured server lets each
    identity read only its own inboxes, so no one else's replies. Empty: `_INBOX`."""
    tenants: list[str] = msgspec.field(default_factory=list)
    """A2A tenants that get a NATS identity of their own in a secured deployment
    (`fleet up --secure`, `fleet init --secure`): each may call agents only as itself,
    on `a2a.<agent>.rpc.<tenant>`, and read only its own replies."""
    create_resources: bool = True
    """Services create the streams, durable consumers and KV buckets they use at start.
    False in a secured deployment: `fleet init` creates them as the admin, and a service
    only binds, stopping with a message naming what is missing."""
    user: str = ""
    password: str = ""
    """Read from the environment or a file, never logged."""


class HttpSettings(msgspec.Struct, kw_only=True):
    """The service's /metrics, /healthz and /readyz endpoint."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port (logged at start); containers set 9090."""


class StoreSettings(msgspec.Struct, kw_only=True):
    """Where a service keeps its SQLite database."""

    dir: str = STATE_DIR
    """Directory for `<service>.db`; relative to the working directory."""


class LogSettings(msgspec.Struct, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json: bool = True
    """JSON lines for machines; `fleet up` keeps JSON and prefixes each line."""


class TracingSettings(msgspec.Struct, kw_only=True):
    exporter: Literal["none", "console", "otlp"] = "none"
    """Where spans go; trace context is propagated in NATS headers in every case."""
    sample_ratio: float = 1.0


class LeaseSettings(msgspec.Struct, kw_only=True):
    """The lease a singleton service holds in the `fleet_leases` KV bucket."""

    lease_s: Annotated[float, msgspec.Meta(ge=1)] = 3.0
    """Lease length in seconds (the TTL of the lease key): a standby takes over at most
    this long after the holder dies, woken by the key's expiry marker; renewed every
    third of it, and a holder that cannot renew for two thirds of it steps down. 3 s
    keeps takeover after a SIGKILL under 5 s (expiry, then the standby's setup) while a
    holder still has two renewals to spare before it must step down; at least 1 s, the
    server's TTL granularity."""
    watch: bool | None = None
    """Standbys watch the lease key (an ordered consumer on the bucket) and take it the
    moment it expires or is released; without, they look every `lease_s / 4`. None:
    watch unless the connection is a secured identity (`creds_file` or `user`), whose
    grants allow no consumer on the lease bucket (a consumer may deliver anywhere)."""


class SigningSettings(msgspec.Struct, kw_only=True):
    """`[signing]`: who signs what moves money, and this service's own key
    (services/kit/signing.py; docs/adr/0012-signed-messages.md). `fleet up` generates
    the keys of a run under `.fleet/keys/` when none is configured."""

    costguard_key: str = ""
    """The cost-guard's public nkey (`U...`): the provisioner carries out only verdicts
    it signed. Required by the provisioner."""
    provisioner_key: str = ""
    """The provisioner's public nkey: the cost-guard's ledger bills only from unit events
    it signed. Required by the cost-guard."""
    watcher_key: str = ""
    """The watcher's public nkey: the provisioner replaces a unit only on a `failed`
    report it signed (a forged one would replace a healthy unit). Required by the
    provisioner."""
    operators: dict[str, str] = msgspec.field(default_factory=dict)
    """Public nkey -> operator name: who may approve or reject a held request. The name
    in the audit trail is the one given here, never one the message claims."""
    seed_file: str = ""
    """A file holding this service's own nkey seed (`S...`, as `fleet keys new` writes
    it); the cost-guard, the provisioner and the watcher sign with it."""
    seed: str = ""
    """This service's seed itself, for the environment (FLEET_SIGNING__SEED) when no file
    is used; a secret: never logged, published or stored."""


class RetentionSettings(msgspec.Struct, kw_only=True):
    """`[retention]`: how long the streams keep history, applied when a service creates
    or updates them (every service does at start, so set it the same for all)."""

    days: Annotated[float, msgspec.Meta(ge=1, le=3650)] = 8.0
    """Days kept of metrics, commands and verdicts, unit events, audit and job events.
    8 so that `fleet report --days 7` always has the whole week; the audit keeps at least
    its own 30 days. Disk: README, "History and reports"."""
    metrics_days: Annotated[float, msgspec.Meta(ge=0.01, le=3650)] | None = None
    """Days of the per-second pool metrics when they should be kept shorter than `days`
    (they are most of the disk; the minute rollup keeps their shape). None: `days`."""
    rollup_days: Annotated[float, msgspec.Meta(ge=1, le=3650)] = 35.0
    """Days of the per-minute rollup (FLEET_ROLLUP): about 0.4 MB per pool per day."""


class KitSettings(msgspec.Struct, kw_only=True):
    """Settings every service has; a service's own settings subclass this."""

    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    lease: LeaseSettings = msgspec.field(default_factory=LeaseSettings)
    signing: SigningSettings = msgspec.field(default_factory=SigningSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    stop_deadline_s: float = 10.0
    """How long a stopping service waits for in-flight work before handing it back."""

    def validate(self, environ: Mapping[str, str]) -> None:
        """Checks past what the types say, run before anything starts (`fleet up`, `fleet
        run`): a ConfigError naming the key. Tables a service reads as free-form (a
        provider's) are checked by the service that owns them; none here."""


def config_path(explicit: str | None = None) -> Path | None:
    """The fleet.toml to read: --config, else FLEET_CONFIG, else ./fleet.toml if present."""
    raw = explicit or os.environ.get("FLEET_CONFIG")
    if raw:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"config file {raw} does not exist; pass an existing fleet.toml")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _env_value(raw: str) -> Any:
    """A variable's value: a TOML array, table or quoted string as such; anything else as
    the text it is, which the setting's type then reads (`5` as a number where a number is
    wanted, but `4090` stays a model name and `123456` a password)."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    return value if isinstance(value, list | dict | str) else raw


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The nested dict that FLEET_<SECTION>__<KEY> variables describe."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name in _NON_SETTINGS:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} conflicts with another variable")
            node = child
        node[path[-1]] = _env_value(raw)
    return out


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, recursively for tables."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


_PATH = re.compile(r" - at `\$\.?(.*)`")


def env_var(path: KeyPath | list[str]) -> str:
    """The environment variable that sets the dotted key `path`."""
    return ENV_PREFIX + "__".join(p.upper() for p in path if p)


def unknown_message(path: KeyPath, valid: list[str], origin: str, by_env: bool = False) -> str:
    """`origin: unknown key a.b; did you mean c?` (or the valid keys), for any table."""
    key = ".".join(path)
    close = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.6)
    if close:
        fix = f"did you mean {close[0]}"
        fix += f" ({env_var([*path[:-1], close[0]])})?" if by_env else "?"
    else:
        fix = f"valid keys here: {', '.join(valid) or 'none'}"
    return f"{origin}: unknown key {key}; {fix}"


class Sources(msgspec.Struct, frozen=True):
    """The merged settings data and where its parts came from."""

    where: str
    """The fleet.toml read (or "fleet.toml" when none was)."""
    data: dict[str, Any]
    from_env: dict[str, Any]
    """The part that FLEET_* variables gave."""

    def origin(self, path: KeyPath) -> tuple[str, bool]:
        """Who set the key: the variable's name or the file; True when it was a variable."""
        if given_at(self.from_env, path):
            node: Any = self.from_env
            for part in path:
                node = node[part]
            if isinstance(node, Mapping):  # a whole table: its keys' variables
                return f"environment variables {env_var(path)}__*", True
            return f"environment variable {env_var(path)}", True
        return self.where, False


def gather(
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Sources:
    """fleet.toml, the FLEET_* variables and explicit overrides, merged in that order."""
    env = os.environ if env is None else env
    path = config_path(config)
    from_env = env_overrides(env)
    data = merge(merge(read_toml(path), from_env), overrides or {})
    return Sources(str(path) if path else "fleet.toml", data, from_env)


def table_settings(name: str, kind: type[T], env: Mapping[str, str] | None = None) -> T:
    """One table (`[nats]`, `[signing]`) alone, from fleet.toml and FLEET_<NAME>__*: for a
    process that is not a Service (the local GPU worker) yet shares the deployment's
    settings; a ConfigError naming the table when it does not fit."""
    table = gather(None, env).data.get(name, {})
    try:
        return msgspec.convert(table if isinstance(table, dict) else {}, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


def load_settings(
    kind: type[T],
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Settings of type `kind` from fleet.toml, the environment and explicit overrides.

    Unknown keys in any table fail first, naming the dotted key, where it came
    from (the file or the variable) and the closest valid key; then bad values,
    naming the key and the variable that would fix it."""
    src = gather(config, env, overrides)
    unknown = unknown_key(src.data, kind)
    if unknown is not None:
        key_path, valid = unknown
        raise ConfigError(unknown_message(key_path, valid, *src.origin(key_path)))
    try:
        return msgspec.convert(src.data, kind, strict=False)
    except msgspec.ValidationError as exc:
        prefix, text = pinpoint(src.data, kind, ()) or ((), str(exc))
        match = _PATH.search(text)
        rest = match.group(1).replace("][", ".").replace("[", ".").strip(".]") if match else ""
        key_path = tuple(p for p in (*prefix, *rest.split(".")) if p)
        key = ".".join(key_path) or "?"
        what = _PATH.sub("", text).strip(" -")
        origin, by_env = src.origin(key_path)
        where = (
            f"set by the {origin}"
            if by_env
            else f"check {src.where} or the environment variable {env_var(key_path)}"
        )
        raise ConfigError(f"setting {key!r}: {what} ({where})") from exc


def check_sections(
    kinds: Sequence[type[Any]], config: str | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Refuse a top-level key that none of `kinds` reads (a misspelt section such as
    `[budgte]`): each service skips the sections it does not read, so only the
    whole set of services can tell that nobody reads it."""
    src = gather(config, env)
    known = sorted(set().union(*(field_types(k) for k in kinds)))
    for key in src.data:
        if key not in known:
            raise ConfigError(unknown_message((key,), known, *src.origin((key,))))


def resolve_nats_url(explicit: str | None = None, configured: str = "") -> str:
    """--nats, else FLEET_NATS_URL, else the setting, else .fleet/nats.url, else localhost."""
    if explicit:
        return explicit
    if env := os.environ.get("FLEET_NATS_URL"):
        return env
    if configured:
        return configured
    url_file = Path(STATE_DIR) / URL_FILE
    if url_file.is_file():
        text = url_file.read_text().strip()
        if text:
            return text
    return DEFAULT_NATS_URL
