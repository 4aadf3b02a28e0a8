"""What every service shares: the Service base, settings, store, metrics, tracing, logs."""

from services.kit.errors import ConfigError, Permanent, Retryable
from services.kit.service import Delivery, Service

__all__ = ["ConfigError", "Delivery", "Permanent", "Retryable", "Service"]
