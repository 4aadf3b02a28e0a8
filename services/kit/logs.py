"""Structured JSON logs on stderr, with secrets scrubbed before they are written."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

from services.kit.redact import load_secrets, scrub

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg, the current span's
    trace_id and span_id (W3C hex, as in `traceparent`) when there is one, and any extras."""

    def __init__(self, service: str, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.service = service
        self.secrets = secrets
        """Values to mask; None: whatever the process's filter holds (services.kit.redact)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # logged while handling a traced message: join log and trace
            doc["trace_id"] = format(span.trace_id, "032x")
            doc["span_id"] = format(span.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc, default=str), self.secrets)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.service = service
        self.secrets = secrets
        """Values to mask; None: whatever the process's filter holds (services.kit.redact)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STD_ATTRS and not k.startswith("_")
        )
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line, self.secrets)


def setup_logging(service: str, level: str = "info", as_json: bool = True) -> None:
    """Route every logger to stderr in the chosen format; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_fleet", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._fleet = True  # type: ignore[attr-defined]
    load_secrets()
    handler.setFormatter(JsonFormatter(service) if as_json else TextFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("nats", "httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
