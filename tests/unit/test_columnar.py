"""The compiled Avro codec against fastavro, on random schemas, random records and broken bodies."""

from __future__ import annotations

import io
import math
import os
import re
import struct
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import load_schema
from stream.avro.codec import AvroCodec, plain_schema
from stream.avro.decoder import BatchDecoder, Column, UnsupportedSchema, column_for
from stream.avro.encoder import BatchEncoder, Const, Values
from stream.exceptions import UnknownSchemaError
from stream.pipeline.columns import prediction_bindings as processor_bindings

PRIMITIVES = ["boolean", "int", "long", "float", "double", "string", "bytes"]
VALUES = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32),
    "double": st.floats(),
    "string": st.text(max_size=12),
    "bytes": st.binary(max_size=12),
}
# Examples per property; a longer hunt: COLUMNAR_EXAMPLES=3000 pytest tests/unit/test_columnar.py
EXAMPLES = int(os.environ.get("COLUMNAR_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def field_types() -> st.SearchStrategy[Any]:
    nullable = st.tuples(st.sampled_from(PRIMITIVES), st.booleans()).map(
        lambda tb: ["null", tb[0]] if tb[1] else [tb[0], "null"])
    return st.one_of(st.sampled_from(PRIMITIVES), nullable)


@st.composite
def schema_and_records(draw) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    types = draw(st.lists(field_types(), min_size=1, max_size=6))
    schema = {"type": "record", "name": "R", "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]}

    def value_of(t: Any) -> st.SearchStrategy[Any]:
        if isinstance(t, list):
            other = t[1 - t.index("null")]
            return st.one_of(st.none(), VALUES[other])
        return VALUES[t]

    record = st.fixed_dictionaries({f"f{i}": value_of(t) for i, t in enumerate(types)})
    return schema, draw(st.lists(record, min_size=1, max_size=25))


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, plain_schema(schema), record)
    return buf.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared bit for bit (NaN and -0.0 included)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def column_value(batch, column: Column, row: int) -> Any:
    if batch.null(column.name)[row]:
        return None
    if column.type in ("string", "bytes"):
        return batch.texts(column.name, [row])[0]
    value = batch.numbers(column.name)[row].item()
    return bool(value) if column.type == "boolean" else value


def decoder_for(reader: dict[str, Any], writer: dict[str, Any] | None = None) -> BatchDecoder:
    codec = AvroCodec(reader, writer_schema=writer)
    return BatchDecoder(codec, [column_for(reader, f["name"]) for f in reader["fields"]
                                if f["type"] != "null"])


def without_addresses(exc: Exception) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x", str(exc))  # fastavro names its buffer object in some messages


def assert_matches_fastavro(decoder: BatchDecoder, values: list[bytes | None]) -> None:
    batch = decoder.decode(values)
    for row, value in enumerate(values):
        try:
            expected = decoder.codec.decode(value)
        except Exception as exc:
            assert row in batch.errors, f"row {row}: fastavro raised {exc!r}, the batch decoder did not"
            assert type(batch.errors[row]) is type(exc) and without_addresses(batch.errors[row]) == without_addresses(exc)
            continue
        assert row not in batch.errors, f"row {row}: {batch.errors.get(row)!r} but fastavro decoded it"
        for column in decoder.columns:
            got, want = column_value(batch, column, row), expected[column.name]
            assert (got is None and want is None) or same(got, want), (column, row, got, want)


@FAST
@given(schema_and_records())
def test_decoder_matches_fastavro_on_random_flat_records(drawn) -> None:
    schema, records = drawn
    assert_matches_fastavro(decoder_for(schema), [encode(schema, r) for r in records])


@FAST
@given(schema_and_records(), st.data())
def test_decoder_matches_fastavro_on_broken_bodies(drawn, data) -> None:
    schema, records = drawn
    values: list[bytes | None] = []
    for r in records:
        body = encode(schema, r)
        how = data.draw(st.sampled_from(["keep", "truncate", "flip", "append", "random", "none"]))
        if how == "truncate" and body:
            body = body[: data.draw(st.integers(0, len(body) - 1))]
        elif how == "flip" and body:
            at = data.draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1:]
        elif how == "append":
            body += data.draw(st.binary(min_size=1, max_size=4))
        elif how == "random":
            body = data.draw(st.binary(max_size=20))
        values.append(None if how == "none" else body)
    assert_matches_fastavro(decoder_for(schema), values)


def test_strings_must_be_strict_utf8_as_python_decodes_them() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"}]}
    samples = [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"\xf0\x8f\xbf\xbf", b"\xe2\x82",
               "héllo €𝄞".encode(), b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\x7f"]
    values = [encode({"type": "record", "name": "R", "fields": [{"name": "s", "type": "bytes"}]}, {"s": s})
              for s in samples]
    assert_matches_fastavro(decoder_for(schema), values)
    batch = decoder_for(schema).decode(values)
    assert sorted(batch.errors) == [0, 1, 2, 3, 4, 5]


def test_evolved_writer_resolves_as_fastavro_does() -> None:
    writer = {"type": "record", "name": "R", "fields": [
        {"name": "gone", "type": "string"}, {"name": "n", "type": "int"}, {"name": "x", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "maybe", "type": ["null", "double"]}]}
    reader = {"type": "record", "name": "R", "fields": [
        {"name": "n", "type": "double"}, {"name": "x", "type": "double"}, {"name": "f", "type": "double"},
        {"name": "maybe", "type": "double"}, {"name": "added", "type": "long", "default": 7},
        {"name": "label", "type": "string", "default": "none"}, {"name": "opt", "type": ["null", "long"], "default": None}]}
    records = [{"gone": "a", "n": 3, "x": 2**60 + 1, "f": 1.5, "maybe": 2.5},
               {"gone": "é", "n": -1, "x": -5, "f": -0.0, "maybe": None}]  # null into a non-null reader: an error
    decoder = decoder_for(reader, writer)
    assert decoder._plan(decoder.codec.raw_writer) is not None, "the kernel covers this resolution"
    assert_matches_fastavro(decoder, [encode(writer, r) for r in records])
    batch = decoder.decode([encode(writer, r) for r in records])
    assert list(batch.errors) == [1]
    assert batch.numbers("added")[0] == 7 and batch.texts("label", [0]) == ["none"] and batch.null("opt")[0]


def test_schemas_beyond_the_kernel_fall_back_to_fastavro() -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "string"}, {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "v", "type": "double"}]}
    decoder = BatchDecoder(AvroCodec(schema), [column_for(schema, "id"), column_for(schema, "v")])
    assert decoder._plan(decoder.codec.raw_writer) is None
    values = [encode(schema, {"id": f"k{i}", "tags": ["a"] * i, "v": i / 3}) for i in range(5)] + [b"\x02"]
    assert_matches_fastavro(decoder, values)
    with pytest.raises(UnsupportedSchema):
        column_for(schema, "tags")


class Registry:
    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.fetched: list[int] = []

    def schema_text(self, schema_id: int) -> str:
        import json

        self.fetched.append(schema_id)
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        return json.dumps(self.schemas[schema_id])

    def register(self, subject, schema) -> int:  # pragma: no cover - not used here
        raise NotImplementedError


def test_confluent_framing_groups_rows_by_writer() -> None:
    reader = load_schema("sensor_reading")
    older = {**reader, "fields": [f for f in reader["fields"] if f["name"] != "humidity"]}
    reader = {**reader, "fields": [*[f for f in reader["fields"] if f["name"] != "humidity"],
                                   {"name": "humidity", "type": "double", "default": 50.0}]}
    source = Registry({1: reader, 2: older})
    codec = AvroCodec(reader, "confluent", schema_source=source)
    decoder = BatchDecoder(codec, [column_for(reader, f["name"]) for f in reader["fields"]])
    record = {"sensor_id": "s1", "ts": 5, "temperature": 1.0, "pressure": 2.0, "vibration": 3.0, "humidity": 4.0}
    frame = lambda i, schema: struct.pack(">bI", 0, i) + encode(schema, record)  # noqa: E731
    values = [frame(1, reader), frame(2, older), frame(9, reader), frame(9, reader), b"\x01abcd" + b"x", b"\x00"]
    assert_matches_fastavro(decoder, values)
    batch = decoder.decode(values)
    assert batch.numbers("humidity")[:2].tolist() == [4.0, 50.0]
    assert isinstance(batch.errors[2], UnknownSchemaError) and sorted(batch.errors) == [2, 3, 4, 5]


# --- encoder ----------------------------------------------------------------------------------------------

PREDICTION = load_schema("prediction")


def prediction_bindings(classes: tuple[str, ...]) -> dict[str, Any]:
    return processor_bindings("m", "v1", classes)


@FAST
@given(st.data())
def test_encoder_writes_what_fastavro_writes(data) -> None:
    classes = tuple(data.draw(st.lists(st.text(max_size=5), max_size=4, unique=True)))
    n = data.draw(st.integers(0, 20))
    prefix = data.draw(st.sampled_from([b"", struct.pack(">bI", 0, 42)]))
    column = lambda s: data.draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    cols: dict[str, Any] = {
        "key": column(st.text(max_size=10)), "event_time": np.array(column(VALUES["long"]), dtype=np.int64),
        "source_topic": column(st.text(max_size=8)),
        "source_partition": np.array(column(VALUES["int"]), dtype=np.int64),
        "source_offset": np.array(column(VALUES["long"]), dtype=np.int64),
        "score": np.array(column(st.floats()), dtype=np.float64),
        "label": np.array(column(st.integers(0, len(classes))), dtype=np.int64),
        "scored_at": np.array(column(VALUES["long"]), dtype=np.int64),
    }
    for j in range(len(classes)):
        cols[f"probability_{j}"] = np.array(column(st.floats()), dtype=np.float64)
    got = BatchEncoder(PREDICTION, prediction_bindings(classes), prefix).encode(n, cols)
    schema = plain_schema(PREDICTION)
    for i in range(n):
        record = {
            "key": cols["key"][i], "event_time": int(cols["event_time"][i]), "source_topic": cols["source_topic"][i],
            "source_partition": int(cols["source_partition"][i]), "source_offset": int(cols["source_offset"][i]),
            "model_name": "m", "model_version": "v1", "score": float(cols["score"][i]),
            "label": (None, *classes)[cols["label"][i]],
            "probabilities": [{"label": c, "probability": float(cols[f"probability_{j}"][i])} for j, c in enumerate(classes)],
            "scored_at": int(cols["scored_at"][i]),
        }
        buf = io.BytesIO(prefix)
        buf.seek(len(prefix))
        fastavro.schemaless_writer(buf, schema, record)
        assert got[i] == buf.getvalue(), f"record {i} differs"


def test_encoder_rejects_what_it_cannot_bind_and_bad_choices() -> None:
    with pytest.raises(UnsupportedSchema):
        BatchEncoder(PREDICTION, {"key": Values("key")})  # fields without a default left unbound
    with pytest.raises(UnsupportedSchema):
        BatchEncoder(PREDICTION, {**prediction_bindings(()), "extra": Const(1)})
    encoder = BatchEncoder(PREDICTION, prediction_bindings(("a",)))
    cols = {"key": ["k"], "event_time": [1], "source_topic": ["t"], "source_partition": [0], "source_offset": [0],
            "score": [0.5], "label": [2], "scored_at": [0], "probability_0": [0.5]}
    with pytest.raises(IndexError):
        encoder.encode(1, cols)
