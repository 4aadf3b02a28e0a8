"""Typed errors a handler raises to say what should happen to its message."""

from __future__ import annotations


class Retryable(Exception):
    """Try the message again later: JetStream redelivers it after `after_s` seconds."""

    def __init__(self, message: str, after_s: float = 1.0) -> None:
        super().__init__(message)
        self.after_s = after_s


class Permanent(Exception):
    """The message can never succeed: it is dead-lettered with this reason and not retried."""


class ConfigError(Exception):
    """A setting is missing or has the wrong type; the message names the key and the fix."""


class NotInitialized(ConfigError):
    """A stream, durable consumer or KV bucket that `fleet init` creates is missing, in a
    deployment whose services only bind (`[nats] create_resources = false`)."""
