"""A strict check of an Avro binary body against its writer schema, before fastavro reads it.

fastavro reads leniently: a varint of 11 bytes, or one whose value does not
fit 64 bits, an ``int`` beyond 32 bits, a boolean byte of 2, a negative
length: it decodes them to some number instead of refusing them. The Avro
specification (and its Java reader, which throws "Invalid long encoding")
does not allow them. The compiled kernel flags such records; this check
makes the fallback path refuse them with the same reason, so every record
the service accepts is one a conforming reader accepts too.

It runs only on records the kernel does not decode (schemas beyond it, and
flagged records): it walks the schema in Python, once per record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.exceptions import MalformedRecordError

__all__ = ["check_body"]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Varint bytes at most: 32 bits take 5 groups of 7, 64 bits take 10.
INT_BYTES, LONG_BYTES = 5, 10


def check_body(schema: Any, body: bytes, start: int = 0) -> None:
    """Raise MalformedRecordError unless ``body[start:]`` is exactly one value of ``schema``, strictly encoded."""
    end = _Checker(body).value(schema, start, {})
    if end != len(body):
        raise MalformedRecordError(f"{len(body) - end} bytes left after the Avro record")


class _Checker:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def value(self, schema: Any, pos: int, names: dict[str, Any]) -> int:
        """The position after one value of ``schema`` at ``pos``."""
        if isinstance(schema, str):
            return self._primitive(schema, pos, names)
        if isinstance(schema, list):
            branch, pos = self._varint(pos, INT_BYTES, "union branch")
            if not 0 <= branch < len(schema):
                raise MalformedRecordError(f"union branch {branch} of {len(schema)}")
            return self.value(schema[branch], pos, names)
        kind = schema["type"]
        if "name" in schema and kind in ("record", "error", "enum", "fixed"):
            names[schema["name"]] = schema
        if kind in ("record", "error"):
            for f in schema["fields"]:
                pos = self.value(f["type"], pos, names)
            return pos
        if kind == "enum":
            index, pos = self._varint(pos, INT_BYTES, "enum index")
            if not 0 <= index < len(schema["symbols"]):
                raise MalformedRecordError(f"enum index {index} of {len(schema['symbols'])} symbols")
            return pos
        if kind == "fixed":
            return self._skip(pos, int(schema["size"]), "fixed")
        if kind in ("array", "map"):
            return self._blocks(schema, pos, names)
        return self.value(kind, pos, names)  # {"type": "long", ...} and logical types

    def _primitive(self, name: str, pos: int, names: Mapping[str, Any]) -> int:
        if name == "null":
            return pos
        if name == "boolean":
            if pos >= len(self.body):
                raise MalformedRecordError("truncated boolean")
            if self.body[pos] > 1:
                raise MalformedRecordError(f"boolean byte {self.body[pos]}, not 0 or 1")
            return pos + 1
        if name == "int":
            value, pos = self._varint(pos, INT_BYTES, "int")
            if not INT_MIN <= value <= INT_MAX:
                raise MalformedRecordError(f"int value {value} does not fit 32 bits")
            return pos
        if name == "long":
            return self._varint(pos, LONG_BYTES, "long")[1]
        if name == "float":
            return self._skip(pos, 4, "float")
        if name == "double":
            return self._skip(pos, 8, "double")
        if name in ("bytes", "string"):
            length, pos = self._varint(pos, LONG_BYTES, f"{name} length")
            if length < 0:
                raise MalformedRecordError(f"negative {name} length {length}")
            end = self._skip(pos, length, name)
            if name == "string":
                try:
                    self.body[pos:end].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MalformedRecordError(f"string is not UTF-8: {exc.reason}") from None
            return end
        if name in names:
            return self.value(names[name], pos, dict(names))
        raise MalformedRecordError(f"unknown type {name!r} in the writer schema")

    def _blocks(self, schema: Mapping[str, Any], pos: int, names: dict[str, Any]) -> int:
        while True:
            count, pos = self._varint(pos, LONG_BYTES, f"{schema['type']} block count")
            if count == 0:
                return pos
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                size, pos = self._varint(pos, LONG_BYTES, "block size")
                if size < 0:
                    raise MalformedRecordError(f"negative block size {size}")
            for _ in range(count):
                if schema["type"] == "map":
                    pos = self._primitive("string", pos, names)
                    pos = self.value(schema["values"], pos, names)
                else:
                    pos = self.value(schema["items"], pos, names)

    def _skip(self, pos: int, n: int, what: str) -> int:
        if pos + n > len(self.body):
            raise MalformedRecordError(f"truncated {what}: {n} bytes wanted, {len(self.body) - pos} left")
        return pos + n

    def _varint(self, pos: int, max_bytes: int, what: str) -> tuple[int, int]:
        """A zigzag varint of at most ``max_bytes`` bytes whose value fits ``7 * max_bytes`` bits' type."""
        body, n, shift = self.body, 0, 0
        for i in range(max_bytes):
            if pos + i >= len(body):
                raise MalformedRecordError(f"truncated {what}")
            b = body[pos + i]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                if n >= 1 << (32 if max_bytes == INT_BYTES else 64):
                    raise MalformedRecordError(f"{what} does not fit {32 if max_bytes == INT_BYTES else 64} bits")
                return (n >> 1) ^ -(n & 1), pos + i + 1
            shift += 7
        raise MalformedRecordError(f"{what}: varint longer than {max_bytes} bytes")
