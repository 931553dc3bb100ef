"""The Schema Registry client: writer schemas by id, and registration of output schemas."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from stream.exceptions import (
    ConfigError,
    SchemaMismatchError,
    SchemaRegistryUnavailableError,
    UnknownSchemaError,
)

__all__ = ["RegistrySchemaSource"]

logger = logging.getLogger(__name__)


# Registry retries before the error is fatal: 0.2 s, 0.4 s, ... 3.2 s apart.
REGISTRY_ATTEMPTS = 5
REGISTRY_BACKOFF_S = 0.2


class RegistrySchemaSource:
    """A Confluent-compatible Schema Registry through ``confluent_kafka.schema_registry``."""

    def __init__(self, url: str, settings: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        try:
            self._client = SchemaRegistryClient({"url": url, **(settings or {})})
        except Exception as exc:  # the client validates its settings eagerly
            raise ConfigError(f"schema registry settings rejected: {exc}") from exc
        self.url = url

    def schema_text(self, schema_id: int) -> str:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        delay = REGISTRY_BACKOFF_S
        for attempt in range(1, REGISTRY_ATTEMPTS + 1):
            try:
                schema = self._client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise UnknownSchemaError(f"schema id {schema_id} is not in the registry at {self.url}") from exc
                if exc.http_status_code < 500 and exc.http_status_code != 429:
                    raise SchemaRegistryUnavailableError(f"registry at {self.url} refused: {exc}") from exc
                error: Exception = exc
            except Exception as exc:  # connection refused, timeouts: httpx errors
                error = exc
            else:
                if schema.schema_type not in (None, "AVRO"):
                    raise SchemaMismatchError(f"schema id {schema_id} is {schema.schema_type}, not AVRO")
                if schema.schema_str is None:
                    raise SchemaMismatchError(f"schema id {schema_id} has no schema text")
                return schema.schema_str
            logger.warning("schema registry %s: attempt %d/%d failed: %s", self.url, attempt, REGISTRY_ATTEMPTS, error)
            if attempt < REGISTRY_ATTEMPTS:
                time.sleep(delay)
                delay *= 2
        raise SchemaRegistryUnavailableError(f"schema registry at {self.url} unreachable: {error}")

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        from confluent_kafka.schema_registry import Schema

        try:
            return int(self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))
        except Exception as exc:
            raise SchemaRegistryUnavailableError(f"cannot register {subject} at {self.url}: {exc}") from exc
