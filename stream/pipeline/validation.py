"""What the schema cannot say about a record: its key, its event time and its values must be usable.

Each failing row gets the first reason found, in this order: decoding, key
(missing, empty, too long), event time (missing, beyond what a timestamp can
hold, too far ahead of the clock, too old for its message), then each
feature field (missing, not finite, outside ``validation.ranges``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream.avro.decoder import DecodedBatch
from stream.config import ValidationConfig
from stream.exceptions import (
    EventTimeError,
    InvalidRecordError,
    KeyTooLongError,
    OutOfRangeError,
    RecordError,
)
from stream.types import InputMessage

__all__ = ["MAX_TIMESTAMP_MS", "MIN_TIMESTAMP_MS", "RecordValidator"]

# Epoch milliseconds of 0001-01-01 and 9999-12-31T23:59:59.999: the range a
# timestamp-millis value can take in a reader that turns it into a date
# (Python's datetime, Java's Instant formatting); outside it readers fail.
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999


class RecordValidator:
    """Checks a decoded batch row by row; returns every row's key and the rows that fail, with why."""

    def __init__(self, *, key_field: str, time_field: str, fields: Sequence[str], key_is_string: bool,
                 config: ValidationConfig) -> None:
        self.key_field = key_field
        self.time_field = time_field
        self.fields = tuple(fields)
        self.key_is_string = key_is_string
        self.max_key_bytes = config.max_key_bytes
        self.ahead_ms = int(config.max_event_ahead_s * 1000)
        self.age_ms = int(config.max_event_age_s * 1000)
        self.ranges = {name: (float(lo), float(hi)) for name, (lo, hi) in config.ranges.items()}

    def check(self, batch: DecodedBatch, messages: Sequence[InputMessage],
              now_ms: int | None = None) -> tuple[list[Any], dict[int, RecordError]]:
        """Every row's key (a str, or None where it is missing), and the failing rows with their errors."""
        bad: dict[int, RecordError] = dict(batch.errors)
        keys = batch.values(self.key_field, np.arange(batch.n))
        if not self.key_is_string:
            keys = [None if k is None else str(k) for k in keys]
        self._keys(keys, bad)
        self._times(batch, messages, int(time.time() * 1000) if now_ms is None else now_ms, bad)
        self._values(batch, bad)
        return keys, bad

    def _keys(self, keys: list[Any], bad: dict[int, RecordError]) -> None:
        short = self.max_key_bytes // 4  # a key of at most this many characters fits in any case
        for i, key in enumerate(keys):
            if i in bad:
                continue
            if key is None or key == "":
                bad[i] = InvalidRecordError(f"key field {self.key_field!r} is missing or empty")
            elif len(key) > short and len(key.encode()) > self.max_key_bytes:
                bad[i] = KeyTooLongError(f"key field {self.key_field!r} is {len(key.encode()):,} bytes, "
                                         f"over validation.max_key_bytes ({self.max_key_bytes:,})")

    def _times(self, batch: DecodedBatch, messages: Sequence[InputMessage], now_ms: int,
               bad: dict[int, RecordError]) -> None:
        name = self.time_field
        for i in np.flatnonzero(batch.null(name)).tolist():
            bad.setdefault(i, InvalidRecordError(f"time field {name!r} is None, not epoch milliseconds"))
        times = batch.numbers(name)
        latest = now_ms + self.ahead_ms
        wrong = (times < MIN_TIMESTAMP_MS) | (times > min(latest, MAX_TIMESTAMP_MS))
        if self.age_ms:
            stamps = np.fromiter((_kafka_ms(m) for m in messages), dtype=np.int64, count=len(messages))
            wrong |= (stamps > 0) & (times < stamps - self.age_ms)
        for i in np.flatnonzero(wrong & ~batch.null(name)).tolist():
            if i in bad:
                continue
            ts = int(times[i])
            if not MIN_TIMESTAMP_MS <= ts <= MAX_TIMESTAMP_MS:
                why = "outside years 1-9999, which no timestamp reader can show"
            elif ts > latest:
                why = (f"{(ts - now_ms) / 1000:,.0f} s ahead of this scorer's clock "
                       f"(validation.max_event_ahead_s = {self.ahead_ms / 1000:g})")
            else:
                why = (f"{(_kafka_ms(messages[i]) - ts) / 1000:,.0f} s older than its Kafka timestamp "
                       f"(validation.max_event_age_s = {self.age_ms / 1000:g})")
            bad[i] = EventTimeError(f"time field {name!r} = {ts} is {why}")

    def _values(self, batch: DecodedBatch, bad: dict[int, RecordError]) -> None:
        for name in self.fields:
            column = batch.numbers(name)
            broken = batch.null(name) | (~np.isfinite(column) if column.dtype.kind == "f" else False)
            for i in np.flatnonzero(broken).tolist():
                if i not in bad:
                    value = None if batch.null(name)[i] else float(column[i])
                    bad[i] = InvalidRecordError(f"field {name!r} is {value!r}, not a finite number")
            if name in self.ranges:
                lo, hi = self.ranges[name]
                outside = ~broken & ((column < lo) | (column > hi))
                for i in np.flatnonzero(outside).tolist():
                    if i not in bad:
                        bad[i] = OutOfRangeError(f"field {name!r} is {float(column[i])!r}, outside [{lo}, {hi}]")


def _kafka_ms(message: InputMessage) -> int:
    """The message's Kafka timestamp in ms (0 when it has none)."""
    stamp = getattr(message, "timestamp", None)
    if stamp is None:
        return 0
    kind, ms = stamp()
    return int(ms) if kind and ms is not None and ms > 0 else 0
