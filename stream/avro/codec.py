"""Avro on the wire: Confluent framing (magic byte, schema id) or raw schemaless bodies.

Timestamps stay epoch milliseconds (ints) in decoded records: the codec
drops the int/long logical types before parsing, which spares a datetime per
field per event and keeps event times exact.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import struct
from collections.abc import Mapping
from typing import Any, Protocol, cast

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import parse_schema

from stream.avro.strict import check_body
from stream.exceptions import (
    ConfigError,
    MalformedRecordError,
    SchemaMismatchError,
    SchemaRegistryUnavailableError,
    SchemaUnavailableError,
)

__all__ = ["AvroCodec", "AvroEncoder", "SchemaSource", "plain_schema"]

logger = logging.getLogger(__name__)

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
# Logical types carried by int/long that the codec reads as plain numbers.
_NUMERIC_LOGICAL = {"timestamp-millis", "timestamp-micros", "local-timestamp-millis",
                    "local-timestamp-micros", "time-millis", "time-micros", "date"}


class SchemaSource(Protocol):
    """Where writer schemas come from, by Confluent schema id."""

    def schema_text(self, schema_id: int) -> str:
        """The schema's JSON; UnknownSchemaError if there is none, SchemaRegistryUnavailableError if unreachable."""

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``subject`` and return its id."""


def plain_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` with int/long logical types removed, parsed by fastavro."""
    return cast(dict[str, Any], parse_schema(_strip_logical(copy.deepcopy(dict(schema)))))


class AvroCodec:
    """Decodes input values to dicts in the reader schema's shape."""

    def __init__(
        self,
        reader_schema: Mapping[str, Any],
        wire_format: str = "raw",
        writer_schema: Mapping[str, Any] | None = None,
        schema_source: SchemaSource | None = None,
        dead_letter_unavailable: bool = False,
    ) -> None:
        """``dead_letter_unavailable``: an unreachable registry makes the record a
        SchemaUnavailableError (dead-lettered) instead of raising
        SchemaRegistryUnavailableError for the whole batch."""
        if wire_format not in ("raw", "confluent"):
            raise ConfigError(f"unknown wire format {wire_format!r}")
        if wire_format == "confluent" and schema_source is None:
            raise ConfigError("the confluent wire format needs a schema registry")
        self.wire_format = wire_format
        self.reader = plain_schema(reader_schema)
        # the writer schema of raw bodies (the reader schema unless configured)
        self.raw_writer = plain_schema(writer_schema) if writer_schema is not None else self.reader
        self._source = schema_source
        self._dead_letter_unavailable = dead_letter_unavailable
        self._writers: dict[int, dict[str, Any]] = {}  # schema id -> parsed writer schema

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """One record; raises a RecordError subclass naming what is wrong."""
        if value is None:
            raise MalformedRecordError("the message has no value (tombstone)")
        if self.wire_format == "confluent":
            if len(value) < _HEADER.size or value[0] != MAGIC_BYTE:
                raise MalformedRecordError(
                    f"not Confluent Avro: expected magic byte 0 and a 4-byte schema id, got {value[:5].hex() or 'empty'}"
                )
            _, schema_id = _HEADER.unpack_from(value)
            return self._read(value, _HEADER.size, self.writer(schema_id))
        return self._read(value, 0, self.raw_writer)

    def writer(self, schema_id: int) -> dict[str, Any]:
        """The parsed writer schema of a Confluent schema id, fetched once; a RecordError if it has none."""
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(schema_id)
        return writer

    def _read(self, value: bytes, start: int, writer: dict[str, Any]) -> dict[str, Any]:
        check_body(writer, value, start)  # fastavro reads over-long varints and the like leniently
        buf = io.BytesIO(value)
        buf.seek(start)
        reader = None if writer is self.reader else self.reader
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except SchemaResolutionError as exc:
            raise SchemaMismatchError(f"writer schema does not resolve to the reader schema: {exc}") from exc
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, KeyError, OverflowError) as exc:
            raise MalformedRecordError(f"cannot decode Avro body: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(value):
            raise MalformedRecordError(f"{len(value) - buf.tell()} bytes left after the Avro record")
        if not isinstance(record, dict):
            raise MalformedRecordError(f"decoded a {type(record).__name__}, not a record")
        return record

    def _fetch_writer(self, schema_id: int) -> dict[str, Any]:
        assert self._source is not None
        try:
            text = self._source.schema_text(schema_id)
        except SchemaRegistryUnavailableError as exc:
            if self._dead_letter_unavailable:
                raise SchemaUnavailableError(f"writer schema id {schema_id} unavailable: {exc}") from exc
            raise
        try:
            writer = plain_schema(json.loads(text))
        except Exception as exc:  # fastavro raises several types for bad schemas
            raise SchemaMismatchError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
        logger.info("cached writer schema id %d", schema_id)
        return writer


class AvroEncoder:
    """Encodes dicts with one schema, framed as the configured wire format."""

    def __init__(self, schema: Mapping[str, Any], wire_format: str = "raw", schema_id: int | None = None) -> None:
        if wire_format == "confluent" and schema_id is None:
            raise ConfigError("the confluent wire format needs a registered schema id")
        self.schema = plain_schema(schema)
        # the Confluent header (magic byte, schema id) before every body; empty for raw
        self.prefix = _HEADER.pack(MAGIC_BYTE, schema_id) if wire_format == "confluent" else b""

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.prefix)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        if (node.get("logicalType") in _NUMERIC_LOGICAL and node.get("type") in ("int", "long")
                and "name" not in node):
            return node["type"]
        return {k: _strip_logical(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node
