"""The batch decoder refuses exactly what a strict Avro reader refuses (varint lengths and ranges included)."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.avro.decoder import BatchDecoder, column_for
from stream.avro.strict import check_body
from stream.exceptions import MalformedRecordError
from tests.unit.test_columnar import column_value, same, schema_and_records

EXAMPLES = int(os.environ.get("COLUMNAR_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Refused(Exception):
    pass


def strict_read(schema: dict[str, Any], body: bytes) -> dict[str, Any]:
    """A reader written from the specification for flat records: int in <= 5 bytes and 32 bits, long in <= 10
    bytes and 64 bits, booleans 0 or 1, strict UTF-8, union branch in range, nothing left over."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(body):
            raise Refused("truncated")
        pos += n
        return body[pos - n:pos]

    def varint(max_bytes: int, bits: int) -> int:
        n = 0
        for i in range(max_bytes):
            b = take(1)[0]
            n |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if n >= 1 << bits:
                    raise Refused("out of range")
                return (n >> 1) ^ -(n & 1)
        raise Refused("varint too long")

    def value(t: Any) -> Any:
        if isinstance(t, list):
            branch = varint(5, 32)
            if not 0 <= branch < len(t):
                raise Refused("branch")
            return value(t[branch])
        if t == "null":
            return None
        if t == "boolean":
            b = take(1)[0]
            if b > 1:
                raise Refused("boolean")
            return bool(b)
        if t == "int":
            return varint(5, 32)
        if t == "long":
            return varint(10, 64)
        if t == "float":
            return struct.unpack("<f", take(4))[0]
        if t == "double":
            return struct.unpack("<d", take(8))[0]
        n = varint(10, 64)
        if n < 0:
            raise Refused("negative length")
        data = take(n)
        if t == "bytes":
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused("utf-8") from exc

    record = {f["name"]: value(f["type"]) for f in schema["fields"]}
    if pos != len(body):
        raise Refused("left over")
    return record


def write(schema: dict[str, Any], record: dict[str, Any], pad: int) -> bytes:
    """``record`` as Avro, every varint stretched by ``pad`` redundant groups (same value, longer encoding)."""
    out = bytearray()

    def varint(v: int) -> None:
        n = (v << 1) ^ (v >> 63)
        groups = []
        while True:
            groups.append(n & 0x7F)
            n >>= 7
            if not n:
                break
        groups += [0] * pad
        out.extend([g | 0x80 for g in groups[:-1]] + [groups[-1]])

    def value(t: Any, v: Any) -> None:
        if isinstance(t, list):
            branch = t.index("null") if v is None else 1 - t.index("null")
            varint(branch)
            value(t[branch], v)
        elif t == "boolean":
            out.append(int(v))
        elif t in ("int", "long"):
            varint(v)
        elif t == "float":
            out.extend(struct.pack("<f", v))
        elif t == "double":
            out.extend(struct.pack("<d", v))
        elif t in ("string", "bytes"):
            data = v.encode() if t == "string" else v
            varint(len(data))
            out.extend(data)

    for f in schema["fields"]:
        value(f["type"], record[f["name"]])
    return bytes(out)


def assert_agrees_with_strict(schema: dict[str, Any], values: list[bytes]) -> None:
    decoder = BatchDecoder(AvroCodec(schema), [column_for(schema, f["name"]) for f in schema["fields"]
                                               if f["type"] != "null"])
    batch = decoder.decode(values)
    for row, body in enumerate(values):
        try:
            expected = strict_read(schema, body)
        except Refused as why:
            assert row in batch.errors, f"row {row}: a strict reader refuses it ({why}), the decoder took it"
            assert isinstance(batch.errors[row], MalformedRecordError)
            continue
        assert row not in batch.errors, f"row {row}: refused ({batch.errors[row]!r}) but a strict reader reads it"
        for column in decoder.columns:
            got, want = column_value(batch, column, row), expected[column.name]
            assert (got is None and want is None) or same(got, want), (column, row, got, want)


@FAST
@given(schema_and_records(), st.data())
def test_stretched_and_mutated_bodies_are_refused_exactly_as_a_strict_reader_refuses_them(drawn, data) -> None:
    schema, records = drawn
    values = []
    for record in records:
        body = write(schema, record, pad=data.draw(st.integers(0, 9)))
        how = data.draw(st.sampled_from(["keep", "flip", "truncate", "random"]))
        if how == "flip" and body:
            at = data.draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1:]
        elif how == "truncate" and body:
            body = body[:data.draw(st.integers(0, len(body) - 1))]
        elif how == "random":
            body = data.draw(st.binary(max_size=24))
        values.append(body)
    assert_agrees_with_strict(schema, values)


def test_an_eleven_byte_timestamp_is_dead_lettered_not_read() -> None:
    schema = load_schema("sensor_reading")
    record = {"sensor_id": "s-1", "ts": 1_700_000_000_000, "temperature": 20.0, "pressure": 1000.0,
              "vibration": 0.1, "humidity": 40.0}
    plain = {**schema, "fields": [{**f, "type": "long"} if f["name"] == "ts" else f for f in schema["fields"]]}
    good = write(plain, record, pad=0)
    ten, eleven = write(plain, record, pad=10 - 6), write(plain, record, pad=11 - 6)  # the time takes 6 bytes
    decoder = BatchDecoder(AvroCodec(schema), [column_for(schema, "ts")])
    batch = decoder.decode([good, ten, eleven])
    assert batch.numbers("ts").tolist()[:2] == [1_700_000_000_000] * 2
    assert sorted(batch.errors) == [2] and "longer than 10 bytes" in str(batch.errors[2])


@pytest.mark.parametrize(("schema", "body", "why"), [
    ("int", bytes([0x80] * 5 + [0x00]), "longer than 5 bytes"),
    ("int", bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x1F]), "does not fit 32 bits"),
    ("long", bytes([0xFF] * 9 + [0x02]), "does not fit 64 bits"),
    ("boolean", b"\x02", "not 0 or 1"),
    ("string", b"\x03", "negative string length"),
    ("string", b"\x06ab", "truncated"),
    ("string", b"\x04\xff\xfe", "not UTF-8"),
    ({"type": "enum", "name": "E", "symbols": ["a"]}, b"\x02", "enum index 1"),
    ({"type": "array", "items": "long"}, b"\x02\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00\x00", "longer than 10"),
])
def test_the_strict_check_names_what_is_wrong(schema: Any, body: bytes, why: str) -> None:
    with pytest.raises(MalformedRecordError, match=why):
        check_body(schema, body)
