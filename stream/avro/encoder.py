"""Columns encoded as Avro records by a compiled kernel program generated from the output schema.

Used for predictions, the one output every event has. A schema or binding
the program does not cover raises UnsupportedSchema at start-up, and the
caller encodes dicts with fastavro instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from stream.avro.codec import plain_schema
from stream.avro.decoder import UnsupportedSchema, primitive_type
from stream.avro.kernels import E_BOOLEAN, E_CHOICE, E_CONST, E_DOUBLE, E_FLOAT, E_LONG, E_STRING, encode_records

__all__ = ["BatchEncoder", "Choice", "Const", "Repeat", "Values"]


@dataclass(frozen=True)
class Const:
    """The same value in every record."""

    value: Any


@dataclass(frozen=True)
class Choice:
    """One of a few values, picked per record by an int column of indexes into ``options``."""

    column: str
    options: tuple[Any, ...]


@dataclass(frozen=True)
class Values:
    """A value per record from a column: int64 or float64 arrays, or a list of str/bytes."""

    column: str


@dataclass(frozen=True)
class Repeat:
    """An array with the same number of items in every record, each item a record bound field by field."""

    items: tuple[Mapping[str, Any], ...]


def _encode_one(schema: Any, value: Any) -> bytes:
    """``value`` as fastavro writes it for a field of type ``schema`` (constants of a program)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, plain_schema({"type": "record", "name": "_One", "fields": [
        {"name": "v", "type": schema}]}), {"v": value})
    return buf.getvalue()


class BatchEncoder:
    """Encodes records of one schema from columns, by a kernel program generated from the schema.

    ``bindings`` says where each field's value comes from. Built once at
    start-up; UnsupportedSchema if the schema or the bindings are beyond the
    kernel, in which case callers encode dicts with fastavro.
    """

    def __init__(self, schema: Mapping[str, Any], bindings: Mapping[str, Any], prefix: bytes = b"") -> None:
        self._consts: list[bytes] = []
        self._ops: list[tuple[int, int, int, int]] = []
        self._int_cols: list[str] = []
        self._float_cols: list[str] = []
        self._text_cols: list[str] = []
        self._float32_cols: set[int] = set()  # float columns written as Avro float
        parsed = plain_schema(schema)
        if prefix:
            self._ops.append((E_CONST, 0, len(self._consts), 1))
            self._const(prefix)
        self._record(parsed, bindings)
        self._op_table = np.array(self._ops, dtype=np.int64).reshape(len(self._ops), 4)
        self._const_bytes = np.frombuffer(b"".join(self._consts) or b"\0", dtype=np.uint8)
        self._const_offsets = np.zeros(len(self._consts) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in self._consts], out=self._const_offsets[1:])
        self._fixed_max = sum(self._max_size(op) for op in self._ops)

    def _const(self, data: bytes) -> None:
        self._consts.append(data)

    def _record(self, schema: Mapping[str, Any], bindings: Mapping[str, Any]) -> None:
        if schema.get("type") != "record":
            raise UnsupportedSchema("not a record")
        unknown = set(bindings) - {f["name"] for f in schema["fields"]}
        if unknown:
            raise UnsupportedSchema(f"bindings for fields the schema lacks: {sorted(unknown)}")
        for f in schema["fields"]:
            name, ftype = f["name"], f["type"]
            if name not in bindings:
                if "default" not in f:
                    raise UnsupportedSchema(f"no binding for field {name!r}")
                binding: Any = Const(f["default"])
            else:
                binding = bindings[name]
            if isinstance(binding, Const):
                self._ops.append((E_CONST, 0, len(self._consts), 1))
                self._const(_encode_one(ftype, binding.value))
            elif isinstance(binding, Choice):
                self._ops.append((E_CHOICE, self._column(self._int_cols, binding.column), len(self._consts),
                                  len(binding.options)))
                for option in binding.options:
                    self._const(_encode_one(ftype, option))
            elif isinstance(binding, Values):
                type_name, nullable, _ = primitive_type(ftype)
                if nullable:
                    raise UnsupportedSchema(f"field {name!r}: nullable fields take Const or Choice")
                op = {"int": E_LONG, "long": E_LONG, "boolean": E_BOOLEAN, "double": E_DOUBLE, "float": E_FLOAT,
                      "string": E_STRING, "bytes": E_STRING}[type_name]
                cols = {E_DOUBLE: self._float_cols, E_FLOAT: self._float_cols, E_STRING: self._text_cols}.get(
                    op, self._int_cols)
                col = self._column(cols, binding.column)
                if op == E_FLOAT:
                    self._float32_cols.add(col)
                self._ops.append((op, col, 0, 0))
            elif isinstance(binding, Repeat):
                if not (isinstance(ftype, dict) and ftype.get("type") == "array"):
                    raise UnsupportedSchema(f"field {name!r}: Repeat needs an array")
                count = len(binding.items)
                self._ops.append((E_CONST, 0, len(self._consts), 1))
                self._const(_encode_one("long", count))
                for item in binding.items:
                    self._record(ftype["items"], item)
                if count:
                    self._ops.append((E_CONST, 0, len(self._consts), 1))
                    self._const(b"\0")
            else:
                raise UnsupportedSchema(f"field {name!r}: unknown binding {binding!r}")

    @staticmethod
    def _column(cols: list[str], name: str) -> int:
        if name not in cols:
            cols.append(name)
        return cols.index(name)

    def _max_size(self, op: tuple[int, int, int, int]) -> int:
        code, _, first, count = op
        if code in (E_CONST, E_CHOICE):
            return max(len(c) for c in self._consts[first:first + count])
        return {E_LONG: 10, E_BOOLEAN: 1, E_DOUBLE: 8, E_FLOAT: 4, E_STRING: 10}[code]

    def encode(self, n: int, columns: Mapping[str, Any]) -> list[bytes]:
        """``n`` encoded records; ``columns`` maps every bound column name to its values."""
        ints = np.zeros((n, len(self._int_cols)), dtype=np.int64)
        for j, name in enumerate(self._int_cols):
            ints[:, j] = columns[name]
        floats = np.zeros((n, len(self._float_cols)), dtype=np.float64)
        for j, name in enumerate(self._float_cols):
            floats[:, j] = columns[name]
        with np.errstate(over="ignore"):
            float32 = floats.astype(np.float32)
        for j in self._float32_cols:  # fastavro refuses these too
            if np.any(np.isinf(float32[:, j]) & np.isfinite(floats[:, j])):
                raise OverflowError(f"a value of {self._float_cols[j]!r} is too large for an Avro float")
        spans = np.zeros((n, len(self._text_cols), 2), dtype=np.int64)
        pieces: list[bytes] = []
        offset = 0
        for j, name in enumerate(self._text_cols):
            values = [v.encode() if isinstance(v, str) else v for v in columns[name]]
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
            stop = offset + np.cumsum(lengths)
            spans[:, j, 0] = stop - lengths
            spans[:, j, 1] = stop
            offset = int(stop[-1]) if n else offset
            pieces.extend(values)
        text = np.frombuffer(b"".join(pieces) or b"\0", dtype=np.uint8)
        out = np.empty(n * self._fixed_max + offset + 1, dtype=np.uint8)
        ends = np.empty(n, dtype=np.int64)
        written = encode_records(self._op_table, self._const_bytes, self._const_offsets, ints,
                                 floats.view(np.uint64), float32.view(np.uint32), text, spans, out, ends)
        if written < 0:
            raise IndexError("a choice column holds an index outside its options")
        data = out[:written].tobytes()
        starts = np.empty(n, dtype=np.int64)
        if n:
            starts[0] = 0
            starts[1:] = ends[:-1]
        return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
