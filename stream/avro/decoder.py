"""Avro in columns: a micro-batch of records decoded into numpy columns.

Per-record Avro in Python costs more than everything else the scorer does
per event, so decoding (and encoding, ``stream.avro.encoder``) runs compiled kernels (``stream.avro.kernels``)
over the whole batch. Their programs are generated here from the schemas at
start-up. What a program does not cover falls back to fastavro, which stays
the reference: a schema with a type the kernels do not know (records inside
records, arrays, maps, enums, fixed, logical types other than timestamps,
aliases) is decoded or encoded by fastavro record by record, and so is every
record a kernel flags. Tests check both against fastavro on random records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.avro.codec import AvroCodec, plain_schema
from stream.avro.kernels import (
    DECODE_OP_WIDTH,
    K_FLOAT,
    K_INT,
    K_SKIP,
    K_SPAN,
    T_BOOLEAN,
    T_BYTES,
    T_DOUBLE,
    T_FLOAT,
    T_INT,
    T_LONG,
    T_NULL,
    T_STRING,
    decode_records,
)
from stream.exceptions import RecordError, RecordTooLargeError

__all__ = ["BatchDecoder", "Column", "DecodedBatch", "UnsupportedSchema", "column_for", "primitive_type"]

_TYPES = {"null": T_NULL, "boolean": T_BOOLEAN, "int": T_INT, "long": T_LONG, "float": T_FLOAT,
          "double": T_DOUBLE, "string": T_STRING, "bytes": T_BYTES}
_KINDS = {"boolean": K_INT, "int": K_INT, "long": K_INT, "float": K_FLOAT, "double": K_FLOAT,
          "string": K_SPAN, "bytes": K_SPAN}
# Writer type -> reader types it resolves to (the Avro specification's promotions, strings excepted).
_PROMOTES = {"int": {"long", "float", "double"}, "long": {"float", "double"}, "float": {"double"}}


class UnsupportedSchema(Exception):
    """The compiled kernels do not cover this schema; fastavro handles it."""


def primitive_type(node: Any) -> tuple[str, bool, int]:
    """(type name, nullable, branch index of null or -1) of a primitive or a union of null and a primitive."""
    if isinstance(node, dict):
        if set(node) - {"type"}:
            raise UnsupportedSchema(f"type {node} carries attributes (logical type?)")
        node = node["type"]
    if isinstance(node, str):
        if node not in _TYPES:
            raise UnsupportedSchema(f"type {node!r} is not primitive")
        return node, node == "null", -1
    if isinstance(node, list) and len(node) == 2 and "null" in node:
        other = node[1 - node.index("null")]
        name, _, _ = primitive_type(other)
        if name == "null":
            raise UnsupportedSchema("a union of null with null")
        return name, True, node.index("null")
    raise UnsupportedSchema(f"type {node} is not a primitive or a nullable primitive")


@dataclass(frozen=True)
class Column:
    """A reader field wanted as a column: ``int`` (int64), ``float`` (float64) or ``text`` (str or bytes)."""

    name: str
    type: str  # the reader schema's primitive type
    nullable: bool

    @property
    def kind(self) -> int:
        return _KINDS[self.type]


def column_for(reader_schema: Mapping[str, Any], name: str) -> Column:
    """The column of reader field ``name``; UnsupportedSchema if it is not a (nullable) primitive."""
    for f in plain_schema(reader_schema)["fields"]:
        if f["name"] == name:
            type_name, nullable, _ = primitive_type(f["type"])
            if type_name == "null":
                raise UnsupportedSchema(f"field {name!r} is always null")
            return Column(name, type_name, nullable)
    raise UnsupportedSchema(f"no field {name!r} in the reader schema")


class DecodedBatch:
    """The wanted columns of a batch of records; rows in ``errors`` did not decode."""

    def __init__(self, columns: Sequence[Column], n: int, buf: np.ndarray) -> None:
        self.n = n
        self.errors: dict[int, RecordError] = {}
        self._buf = buf
        self._index: dict[str, int] = {}
        counts = {K_INT: 0, K_FLOAT: 0, K_SPAN: 0}
        self._where: list[tuple[int, int]] = []  # per column: (kind, index among its kind)
        for i, c in enumerate(columns):
            self._index[c.name] = i
            self._where.append((c.kind, counts[c.kind]))
            counts[c.kind] += 1
        self.columns = list(columns)
        self.ints = np.zeros((n, counts[K_INT]), dtype=np.int64)
        self.floats = np.zeros((n, counts[K_FLOAT]), dtype=np.float64)
        self.spans = np.zeros((n, counts[K_SPAN], 2), dtype=np.int64)
        self.nulls = np.zeros((n, len(columns)), dtype=np.bool_)
        self._texts: dict[tuple[int, int], str | bytes] = {}  # (row, column): fallback and default values

    def numbers(self, name: str) -> np.ndarray:
        """An int or float column (undefined where null or in error)."""
        kind, j = self._where[self._index[name]]
        if kind == K_SPAN:
            raise TypeError(f"column {name!r} holds text")
        return self.ints[:, j] if kind == K_INT else self.floats[:, j]

    def null(self, name: str) -> np.ndarray:
        return self.nulls[:, self._index[name]]

    def texts(self, name: str, rows: Sequence[int] | np.ndarray) -> list[Any]:
        """Values of a text column at ``rows``: str for strings, bytes for bytes, None where null."""
        i = self._index[name]
        _, j = self._where[i]
        rows = rows.tolist() if isinstance(rows, np.ndarray) else list(rows)
        data = self._buf.data
        spans = self.spans[rows, j].tolist()
        if self.columns[i].type == "string":
            out: list[Any] = [str(data[s:e], "utf-8") for s, e in spans]
        else:
            out = [bytes(data[s:e]) for s, e in spans]
        nulls = self.nulls[rows, i]
        if nulls.any():
            for k in np.flatnonzero(nulls).tolist():
                out[k] = None
        overrides = self._texts
        if overrides:
            for k, r in enumerate(rows):
                if (r, i) in overrides:
                    out[k] = overrides[(r, i)]
        return out

    def values(self, name: str, rows: np.ndarray) -> list[Any]:
        """Python values of any column at ``rows``, None where null."""
        if self._where[self._index[name]][0] == K_SPAN:
            return self.texts(name, rows)
        nulls = self.null(name)[rows].tolist()
        return [None if null else v for v, null in zip(self.numbers(name)[rows].tolist(), nulls)]

    def set_record(self, row: int, record: Mapping[str, Any]) -> None:
        """Fill ``row`` from a record decoded by fastavro."""
        for i, column in enumerate(self.columns):
            self.set_value(row, i, record.get(column.name))

    def set_value(self, row: int, i: int, value: Any) -> None:
        kind, j = self._where[i]
        self.nulls[row, i] = value is None
        if value is None:
            return
        if kind == K_INT:
            self.ints[row, j] = int(value)
        elif kind == K_FLOAT:
            self.floats[row, j] = float(value)
        else:
            self._texts[(row, i)] = value


@dataclass(frozen=True)
class _DecodePlan:
    ops: np.ndarray  # (writer fields, DECODE_OP_WIDTH)
    defaults: tuple[tuple[int, Any], ...]  # (column, value) for wanted fields the writer lacks


def _decode_plan(writer: Mapping[str, Any], reader: Mapping[str, Any], columns: Sequence[Column]) -> _DecodePlan:
    """The kernel's program for records written with ``writer`` and read as ``reader``."""
    if writer.get("type") != "record" or reader.get("type") != "record":
        raise UnsupportedSchema("not a record")
    if writer.get("name") != reader.get("name"):
        raise UnsupportedSchema("record names differ")
    reader_fields = {f["name"]: f for f in reader["fields"]}
    if any(f.get("aliases") for f in reader["fields"]):
        raise UnsupportedSchema("reader fields with aliases")
    wanted = {c.name: i for i, c in enumerate(columns)}
    counts = {K_INT: 0, K_FLOAT: 0, K_SPAN: 0}
    slot: dict[str, int] = {}
    for c in columns:
        slot[c.name] = counts[c.kind]
        counts[c.kind] += 1
    ops = []
    written = set()
    for f in writer["fields"]:
        w_type, _, null_branch = primitive_type(f["type"])
        name = f["name"]
        written.add(name)
        r_field = reader_fields.get(name)
        kind = col = field = 0
        reader_nullable = 0
        if r_field is not None:
            r_type, r_nullable, _ = primitive_type(r_field["type"])
            if w_type != r_type and (null_branch >= 0 or r_type not in _PROMOTES.get(w_type, ())):
                raise UnsupportedSchema(f"field {name!r}: {w_type} read as {r_type}")
            if name in wanted:
                column = columns[wanted[name]]
                kind, col, field = column.kind, slot[name], wanted[name]
                reader_nullable = int(r_nullable)
        else:
            kind = K_SKIP
        ops.append((_TYPES[w_type], null_branch, kind, col, field, reader_nullable))
    defaults = []
    for name, r_field in reader_fields.items():
        if name in written:
            continue
        if "default" not in r_field:
            raise UnsupportedSchema(f"reader field {name!r} has no default and the writer lacks it")
        primitive_type(r_field["type"])
        if name in wanted:
            defaults.append((wanted[name], r_field["default"]))
    table = np.array(ops, dtype=np.int64).reshape(len(ops), DECODE_OP_WIDTH)
    return _DecodePlan(table, tuple(defaults))


class BatchDecoder:
    """Decodes the values of a batch into the wanted reader columns, compiled where it can."""

    def __init__(self, codec: AvroCodec, columns: Sequence[Column], max_bytes: int = 0) -> None:
        """``max_bytes`` > 0: longer values are not decoded but fail with RecordTooLargeError."""
        self.codec = codec
        self.columns = list(columns)
        self.max_bytes = max_bytes
        self._plans: dict[int, _DecodePlan | None] = {}  # id(writer schema) -> plan, None: fastavro

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Every value decoded or in ``errors`` with the reason, as ``AvroCodec.decode`` would give it."""
        n = len(values)
        lengths = np.fromiter((len(v) if v is not None else 0 for v in values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buf = np.frombuffer(b"".join(v for v in values if v is not None), dtype=np.uint8)
        batch = DecodedBatch(self.columns, n, buf)
        present = np.fromiter((v is not None for v in values), dtype=np.bool_, count=n)
        too_large = lengths > self.max_bytes if self.max_bytes > 0 else np.zeros(n, dtype=np.bool_)
        for r in np.flatnonzero(too_large).tolist():
            batch.errors[r] = RecordTooLargeError(
                f"value of {lengths[r]:,} bytes is over validation.max_record_bytes ({self.max_bytes:,})")
        present &= ~too_large
        fallback: list[int] = []
        if self.codec.wire_format == "raw":
            groups = [(self.codec.raw_writer, np.flatnonzero(present))]
            body_starts = starts
        else:
            header = 5
            framed = present & (lengths >= header)
            framed[framed] &= buf[starts[framed]] == 0
            ids = np.zeros(n, dtype=np.int64)
            at = starts[framed]
            ids[framed] = ((buf[at + 1].astype(np.int64) << 24) | (buf[at + 2].astype(np.int64) << 16)
                           | (buf[at + 3].astype(np.int64) << 8) | buf[at + 4].astype(np.int64))
            groups = []
            for schema_id in np.unique(ids[framed]).tolist():
                rows = np.flatnonzero(framed & (ids == schema_id))
                try:
                    groups.append((self.codec.writer(schema_id), rows))
                except RecordError as exc:
                    for r in rows.tolist():
                        batch.errors[r] = exc
            body_starts = starts + header
        undecoded = ~present if self.codec.wire_format == "raw" else ~framed
        fallback.extend(np.flatnonzero(undecoded & ~too_large).tolist())
        flagged = np.zeros(n, dtype=np.bool_)
        for writer, rows in groups:
            plan = self._plan(writer)
            if plan is None:
                fallback.extend(rows.tolist())
                continue
            decode_records(buf, body_starts, ends, rows.astype(np.int64), plan.ops, batch.ints, batch.floats,
                           batch.spans, batch.nulls, flagged)
            for i, value in plan.defaults:
                for r in rows.tolist():
                    batch.set_value(r, i, value)
        fallback.extend(np.flatnonzero(flagged).tolist())
        for r in fallback:
            try:
                batch.set_record(r, self.codec.decode(values[r]))
            except RecordError as exc:
                batch.errors[r] = exc
        return batch

    def _plan(self, writer: Mapping[str, Any]) -> _DecodePlan | None:
        key = id(writer)
        if key not in self._plans:
            try:
                self._plans[key] = _decode_plan(writer, self.codec.reader, self.columns)
            except UnsupportedSchema:
                self._plans[key] = None
        return self._plans[key]
