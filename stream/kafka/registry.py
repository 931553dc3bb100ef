"""The Schema Registry client: writer schemas by id, and registration of output schemas.

One retry policy, ours: ``REGISTRY_ATTEMPTS`` attempts, ``backoff`` between
them, each HTTP request bounded by the connect and read timeouts. The
confluent-kafka client's own retries are turned off, so the worst case is
known: with a registry that refuses connections, about 1.5 s of backoff;
with one that accepts and never answers, five read timeouts on top. Then
``processing.registry_unavailable`` decides (docs/wire-format.md).
Credentials in the URL or the settings never reach a log line, an error
message or a ``repr``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from stream.avro.codec import SchemaSource
from stream.config import CodecConfig, redact_url
from stream.exceptions import (
    ConfigError,
    SchemaMismatchError,
    SchemaRegistryUnavailableError,
    UnknownSchemaError,
)

__all__ = ["REGISTRY_ATTEMPTS", "RegistrySchemaSource", "backoff", "is_retriable", "registry_for"]

logger = logging.getLogger(__name__)

# Attempts per request before the registry counts as unavailable.
REGISTRY_ATTEMPTS = 5
# Backoff before attempt k (k >= 1): a random share of BACKOFF_BASE_S * 2**(k-1),
# capped; 0.1 + 0.2 + 0.4 + 0.8 = 1.5 s at most over the default attempts.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
# HTTP timeouts per request: connecting, and waiting for an answer.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0

T = TypeVar("T")


def is_retriable(exc: Exception) -> bool:
    """Whether another attempt may succeed: transport errors, 5xx, 408 and 429 are; other answers are final."""
    status = getattr(exc, "http_status_code", None)
    if isinstance(status, int) and status > 0:
        return status >= 500 or status in (408, 429)
    return True  # no HTTP answer at all: refused, reset, timed out, name not resolved


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): full jitter over a doubling cap."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))  # noqa: S311 - jitter


class RegistrySchemaSource:
    """A Confluent-compatible Schema Registry through ``confluent_kafka.schema_registry``."""

    def __init__(self, url: str, settings: Mapping[str, Any] | None = None,
                 attempts: int = REGISTRY_ATTEMPTS) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = redact_url(url)  # for messages; the client gets the real one
        self.attempts = attempts
        conf = {"url": url, "max.retries": 0, "timeout": _timeout(), **(settings or {})}
        try:
            self._client = SchemaRegistryClient(conf)
        except Exception as exc:  # the client validates its settings eagerly
            raise ConfigError(f"[codec.schema_registry] is refused: {_message(exc)}") from None

    def __repr__(self) -> str:
        return f"RegistrySchemaSource({self.url!r})"

    def schema_text(self, schema_id: int) -> str:
        """The writer schema of ``schema_id``; UnknownSchemaError, SchemaMismatchError, or unavailable."""
        schema = self._call(lambda: self._client.get_schema(schema_id), f"schema id {schema_id}",
                            unknown=f"schema id {schema_id} is not in the registry at {self.url}")
        if schema.schema_type not in (None, "AVRO"):
            raise SchemaMismatchError(f"schema id {schema_id} is {schema.schema_type}, not AVRO")
        if schema.schema_str is None:
            raise SchemaMismatchError(f"schema id {schema_id} has no schema text")
        return schema.schema_str

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (or find it there) and return its id."""
        from confluent_kafka.schema_registry import Schema

        registered = Schema(json.dumps(schema), "AVRO")
        return int(self._call(lambda: self._client.register_schema(subject, registered), f"registering {subject}"))

    def _call(self, request: Callable[[], T], what: str, unknown: str | None = None) -> T:
        """``request`` under the retry policy; a final refusal or the last failure raises."""
        error: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except Exception as exc:  # httpx transport errors and SchemaRegistryError, told apart below
                error = exc
            status = getattr(error, "http_status_code", None)
            if unknown is not None and status == 404:
                raise UnknownSchemaError(unknown) from None
            if not is_retriable(error):
                raise SchemaRegistryUnavailableError(
                    f"registry at {self.url} refused {what}: {_message(error)}") from None
            logger.warning("schema registry %s: %s, attempt %d/%d failed: %s",
                           self.url, what, attempt, self.attempts, _message(error))
            if attempt < self.attempts:
                time.sleep(backoff(attempt))
        assert error is not None
        raise SchemaRegistryUnavailableError(f"schema registry at {self.url} unreachable ({what}): {_message(error)}")


def registry_for(codec: CodecConfig, given: SchemaSource | None = None) -> SchemaSource | None:
    """``given``, else the configured Schema Registry for the Confluent wire format, else None (raw Avro)."""
    if given is not None or codec.format != "confluent":
        return given
    assert codec.schema_registry_url is not None  # checked when the configuration is loaded
    return RegistrySchemaSource(codec.schema_registry_url, codec.schema_registry)


def _timeout() -> Any:
    """The HTTP timeouts, in the HTTP library the registry client uses (httpx2, or httpx before it)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]
    return httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)


def _message(exc: Exception) -> str:
    """The error's text without any URL credentials it may quote."""
    return redact_url(f"{type(exc).__name__}: {exc}")
