"""Check a fleet.toml (and the FLEET_* variables) for every service before starting any.

`fleet up` and `fleet run` call `check()` first: a misspelt key or a bad value
then stops the command at once with one line and exit code 2, instead of
after NATS and six services have started, and instead of the supervisor
restarting a service that can never start. Only the services' settings
modules are imported (a service module can take seconds to import).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from services.kit.config import check_sections, load_settings
from services.kit.errors import ConfigError
from tools.registry import ORDER

SETTINGS = {
    "watcher": "services.watcher.settings:WatcherSettings",
    "scaler": "services.scaler.settings:ScalerSettings",
    "costguard": "services.costguard.settings:CostguardSettings",
    "provisioner": "services.provisioner.config:ProvisionerSettings",
    "gateway": "services.gateway.service:GatewaySettings",
    "brain": "services.brain.settings:BrainSettings",
    "runner": "services.runner.settings:RunnerSettings",
}
"""Each service's settings type (`Service.settings_type`), by where it is defined."""

CONFIG_ERROR_EXIT = 2
"""The exit code of a configuration error: the supervisor does not restart it."""


def settings_type(name: str) -> type[Any]:
    """The settings type of service `name`, imported without its service module."""
    module, _, attr = SETTINGS[name].partition(":")
    kind: type[Any] = getattr(importlib.import_module(module), attr)
    return kind


def check(config: str | None, names: tuple[str, ...] = ORDER) -> None:
    """Raise ConfigError naming the first bad key for any of `names`, or an unknown section.

    Sections are checked against every service (a section only an unstarted
    service reads is still a known one)."""
    kinds = [settings_type(n) for n in ORDER]
    for name in names:
        load_settings(settings_type(name), config).validate(os.environ)
    check_sections(kinds, config)


def exit_on_error(verb: str, config: str | None, names: tuple[str, ...] = ORDER) -> int | None:
    """`check()` for a command: the error as one line on stderr and its exit code, or None."""
    try:
        check(config, names)
    except ConfigError as exc:
        print(f"{verb}: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    return None
