"""The Avro schemas (.avsc) that streamscore reads and writes, shipped as package data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_DIR", "fingerprint", "load_schema", "schema_path"]

SCHEMA_DIR = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """Path of a bundled schema, by file stem (``"sensor_reading"``) or file name."""
    path = SCHEMA_DIR / (name if name.endswith(".avsc") else f"{name}.avsc")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")))
        raise FileNotFoundError(f"no bundled schema {name!r}; known: {known}")
    return path


def load_schema(name: str) -> dict[str, Any]:
    """The JSON of a bundled schema, not yet parsed by fastavro."""
    return json.loads(schema_path(name).read_text())


def fingerprint(schema: dict[str, Any] | str) -> str:
    """sha256 of the schema's Avro parsing canonical form, as hex.

    Two schemas that differ only in docs, aliases or field order of their
    JSON text share a fingerprint; any change that matters to the wire does not.
    """
    import hashlib

    from fastavro.schema import to_parsing_canonical_form

    raw = json.loads(schema) if isinstance(schema, str) else schema
    return hashlib.sha256(to_parsing_canonical_form(raw).encode()).hexdigest()
