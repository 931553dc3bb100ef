"""Decoding: both wire formats, schema evolution, and every way a value can be undecodable."""

from __future__ import annotations

import json
import struct

import pytest

from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.exceptions import MalformedRecordError, SchemaMismatchError, UnknownSchemaError

READER = load_schema("sensor_reading")
RECORD = {"sensor_id": "s-1", "ts": 1_700_000_000_000, "temperature": 60.0, "pressure": 101_300.0,
          "vibration": 2.0, "humidity": 40.0}


class FakeRegistry:
    """A SchemaSource holding schemas in memory."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.fetches = 0

    def schema_text(self, schema_id: int) -> str:
        self.fetches += 1
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        return self.schemas[schema_id]

    def register(self, subject: str, schema: dict) -> int:
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = json.dumps(schema)
        return schema_id


def with_fields(base: dict, drop: tuple[str, ...] = (), add: tuple[dict, ...] = ()) -> dict:
    fields = [f for f in base["fields"] if f["name"] not in drop] + list(add)
    return {**base, "fields": fields}


def test_raw_round_trip_keeps_millisecond_timestamps() -> None:
    value = AvroEncoder(READER).encode(RECORD)
    assert AvroCodec(READER).decode(value) == RECORD


def test_confluent_framing_fetches_each_writer_schema_once() -> None:
    registry = FakeRegistry()
    schema_id = registry.register("in-value", READER)
    encoder = AvroEncoder(READER, "confluent", schema_id)
    codec = AvroCodec(READER, "confluent", schema_source=registry)
    value = encoder.encode(RECORD)
    assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] == schema_id
    for _ in range(3):
        assert codec.decode(value) == RECORD
    assert registry.fetches == 1


def test_reader_with_an_added_field_gets_its_default() -> None:
    reader = with_fields(READER, add=({"name": "site", "type": "string", "default": "unknown"},))
    registry = FakeRegistry()
    old_id = registry.register("in-value", READER)
    codec = AvroCodec(reader, "confluent", schema_source=registry)
    decoded = codec.decode(AvroEncoder(READER, "confluent", old_id).encode(RECORD))
    assert decoded == {**RECORD, "site": "unknown"}
    raw = AvroCodec(reader, "raw", writer_schema=READER)
    assert raw.decode(AvroEncoder(READER).encode(RECORD)) == {**RECORD, "site": "unknown"}


def test_field_removed_from_the_reader_is_dropped() -> None:
    writer = with_fields(READER, add=({"name": "firmware", "type": "string"},))
    registry = FakeRegistry()
    new_id = registry.register("in-value", writer)
    codec = AvroCodec(READER, "confluent", schema_source=registry)
    value = AvroEncoder(writer, "confluent", new_id).encode({**RECORD, "firmware": "v2.1"})
    assert codec.decode(value) == RECORD


def test_writer_that_does_not_resolve_is_a_schema_mismatch() -> None:
    writer = with_fields(READER, drop=("humidity",))  # the reader needs humidity and has no default
    registry = FakeRegistry()
    schema_id = registry.register("in-value", writer)
    codec = AvroCodec(READER, "confluent", schema_source=registry)
    with pytest.raises(SchemaMismatchError, match="humidity"):
        codec.decode(AvroEncoder(writer, "confluent", schema_id).encode({k: v for k, v in RECORD.items() if k != "humidity"}))


@pytest.mark.parametrize(
    "value, message",
    [
        (b"", "magic byte"),
        (b"\x01\x00\x00\x00\x01abc", "magic byte"),
        (b"{\"json\": true}", "magic byte"),
        (None, "tombstone"),
    ],
)
def test_bad_confluent_framing_is_malformed(value, message) -> None:
    codec = AvroCodec(READER, "confluent", schema_source=FakeRegistry())
    with pytest.raises(MalformedRecordError, match=message):
        codec.decode(value)


def test_unknown_schema_id_is_reported() -> None:
    codec = AvroCodec(READER, "confluent", schema_source=FakeRegistry())
    with pytest.raises(UnknownSchemaError, match="99"):
        codec.decode(b"\x00\x00\x00\x00\x63" + AvroEncoder(READER).encode(RECORD))


@pytest.mark.parametrize(
    "value",
    [
        b"not avro at all",
        b"\x02",  # a string length, then nothing
        b"",
    ],
)
def test_garbage_raw_bytes_are_malformed(value: bytes) -> None:
    with pytest.raises(MalformedRecordError):
        AvroCodec(READER).decode(value)


def test_trailing_bytes_are_malformed() -> None:
    value = AvroEncoder(READER).encode(RECORD) + b"\x00\x01"
    with pytest.raises(MalformedRecordError, match="2 bytes left"):
        AvroCodec(READER).decode(value)
