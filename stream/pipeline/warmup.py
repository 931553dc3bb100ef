"""A synthetic batch that runs the compiled kernels once before the first real events."""

from __future__ import annotations

from typing import Any

__all__ = ["WarmUpMessage", "sample_record"]


class WarmUpMessage:
    """The parts of a consumed message the processor reads, for the warm-up batch."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def topic(self) -> str:
        return "streamscore-warm-up"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


def sample_record(schema: Any) -> Any:
    """A valid value of an Avro type: a non-empty string key, zeros, first branches and symbols."""
    if isinstance(schema, list):
        return sample_record(next((s for s in schema if s != "null"), "null"))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: sample_record(f["type"]) for f in schema["fields"]}
        if kind == "enum":
            return schema["symbols"][0]
        if kind == "fixed":
            return b"\0" * schema["size"]
        if kind == "array":
            return []
        if kind == "map":
            return {}
        return sample_record(kind)
    return {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
            "string": "warm-up", "bytes": b"warm-up"}[schema]
