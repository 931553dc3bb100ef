"""Per-key window state, and the feature vectors of events in arrival order."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np

from features.exceptions import FeatureValueError
from features.kernel import AGG_CODES, NEWEST, WindowState, reserve, running_clocks, update_windows
from features.keyindex import EncodedKeys, KeyIndex, encode_keys
from features.snapshot import pack, parse, write
from features.spec import FeatureSpec

__all__ = ["FeatureStore", "check_values"]

# A shard's clock before its first event.
NO_TIME = np.iinfo(np.int64).min
# The events' clocks without a ttl (the kernel never reads them then).
NO_CLOCKS = np.zeros(0, dtype=np.int64)


def check_values(fields: Sequence[str], values: Sequence[object]) -> None:
    """FeatureValueError unless every value is a finite number."""
    for name, v in zip(fields, values):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise FeatureValueError(f"field {name!r} is {v!r}, not a finite number")


class FeatureStore:
    """Window state for every key seen, and the features of each new event.

    An event's features include the event itself and depend only on the
    events of its key that arrived before it, never on how the stream was
    cut into batches: the batch kernel runs the events one after another.

    Each key belongs to a shard (the input partition it arrives on), so that
    the keys of one shard can be exported when they changed, dropped when
    the shard moves away, and loaded when it comes back (``dirty``,
    ``export``, ``drop``, ``load``).

    With ``key_ttl_ms`` > 0, keys expire in event time. Each shard has a
    clock, the newest event time among its events so far. A key whose newest
    event is more than ``key_ttl_ms`` behind its shard's clock has expired:
    its next event finds empty windows, and ``expire`` forgets it. Both
    follow from the events alone, so when ``expire`` runs changes no feature.
    """

    def __init__(self, spec: FeatureSpec, key_ttl_ms: int = 0) -> None:
        self.spec = spec
        self.key_ttl_ms = int(key_ttl_ms)
        self._clock = np.full(8, NO_TIME, dtype=np.int64)  # shard -> newest event time
        self._fields = spec.fields
        n_fields = len(spec.fields)
        self._index = KeyIndex()  # key -> slot
        # per window: its state, count size (0: time window), span in ms, 1 - ewma alpha, aggregates, first column
        self._windows: list[tuple[WindowState, int, float, float, np.ndarray, int]] = []
        col0 = 0
        for w in spec.windows:
            size = (w.size or 0) if w.kind == "count" else 0
            state = WindowState(n_fields, size)
            aggs = np.array([AGG_CODES[a] for a in w.aggregates], dtype=np.int64)
            span_ms = float(w.seconds or 0.0) * 1000.0 if w.kind == "time" else 0.0
            self._windows.append((state, size, span_ms, 1.0 - w.ewma_alpha, aggs, col0))
            col0 += len(w.aggregates)
        self._stride = col0  # features per field
        self._keys: list[str | None] = []  # slot -> key (None: free)
        self._free: list[int] = []
        self._shard = np.zeros(64, dtype=np.int64)  # slot -> shard
        self._dirty = np.zeros(64, dtype=bool)  # slot -> updated since its shard's last ``clean``
        self._held = np.zeros(64, dtype=bool)  # slot -> holds a key
        self.fingerprint = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        """Number of keys with state."""
        return len(self._index)

    def update(self, key: str, ts_ms: int, values: Sequence[float]) -> list[float]:
        """Fold one event into ``key``'s windows and return its features.

        Raises FeatureValueError (and changes no state) when a value is not
        a finite number.
        """
        return self.update_many([(key, ts_ms, values)])[0].tolist()

    def update_many(self, events: Iterable[tuple[str, int, Sequence[float]]],
                    shards: np.ndarray | None = None) -> np.ndarray:
        """Features of several events, in the order given, as an ``(n, f)`` float64 matrix.

        Every value is checked first; one bad value raises FeatureValueError
        and no event of the call changes any state. ``shards``: as for
        ``update_arrays``.
        """
        events = list(events)
        fields = self._fields
        for _key, _ts, values in events:
            check_values(fields, values)
        times = np.fromiter((ts for _, ts, _ in events), dtype=np.int64, count=len(events))
        matrix = np.asarray([v for _, _, v in events], dtype=np.float64).reshape(len(events), len(fields))
        return self.update_arrays([key for key, _, _ in events], times, matrix, shards)

    def update_arrays(self, keys: Sequence[str], times: np.ndarray, values: np.ndarray,
                      shards: np.ndarray | None = None, clocks: np.ndarray | None = None,
                      held: np.ndarray | None = None) -> np.ndarray:
        """``update_many`` for a batch already in arrays: ``values`` is ``(n, fields)`` float64.

        ``shards`` gives each event's shard (0 when not given); a key takes
        the shard of its latest event. ``clocks`` are the events' shard clocks
        from ``advance_clocks``, for a caller that advanced them over events it
        then leaves out; without them this call advances them. ``held``, an
        ``(n,)`` int64 array of zeros, receives how many events each event's
        key holds after it (its largest window). Nothing changes when it raises:
        a non-finite value raises FeatureValueError, and state grows for every
        window before any is updated.
        """
        n = len(keys)
        out = np.empty((n, self.spec.n_features), dtype=np.float64)
        if n == 0:
            return out
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise FeatureValueError(f"field {self._fields[col]!r} of event {row} is {values[row, col]}, not finite")
        shards = np.zeros(n, dtype=np.int64) if shards is None else np.ascontiguousarray(shards, dtype=np.int64)
        times = np.ascontiguousarray(times, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if held is None:
            held = np.zeros(n, dtype=np.int64)
        slots = self._slots_for(keys)
        # Every window is grown before any is updated: if growing fails (memory),
        # no state has changed and the caller may retry the events one by one.
        for state, *_ in self._windows:
            reserve(state, slots)
        if clocks is None:
            clocks = self.advance_clocks(times, shards)
        for state, _size, span_ms, keep, aggs, col0 in self._windows:
            update_windows(state, slots, times, values, span_ms, keep, aggs, out, col0, self._stride,
                           clocks, self.key_ttl_ms, held)
        self._shard[slots] = shards
        self._dirty[slots] = True
        return out

    def advance_clocks(self, times: np.ndarray, shards: np.ndarray) -> np.ndarray:
        """Move the shards' clocks over these events (in order); each event's clock, itself included.

        Without a ttl nothing reads the clocks: nothing is kept, and the result is empty.
        """
        if self.key_ttl_ms <= 0:
            return NO_CLOCKS
        shards = np.ascontiguousarray(shards, dtype=np.int64)
        if len(shards):
            self._grow_clocks(int(shards.max()))
        return running_clocks(shards, np.ascontiguousarray(times, dtype=np.int64), self._clock)

    def _grow_clocks(self, shard: int) -> None:
        if shard >= len(self._clock):
            grown = np.full(shard * 2 + 1, NO_TIME, dtype=np.int64)
            grown[: len(self._clock)] = self._clock
            self._clock = grown

    def clock(self, shard: int) -> int | None:
        """The newest event time of ``shard`` so far (None: no event yet)."""
        value = int(self._clock[shard]) if shard < len(self._clock) else NO_TIME
        return None if value == NO_TIME else value

    def set_clock(self, shard: int, value: int | None) -> None:
        """Set ``shard``'s clock (a restore: the clock as of the state restored)."""
        self._grow_clocks(shard)
        self._clock[shard] = NO_TIME if value is None else value

    def newest(self, keys: Sequence[str]) -> np.ndarray:
        """The newest event time of each key, in the order given."""
        return self._newest(self._held_slots(keys))

    def _newest(self, slots: np.ndarray) -> np.ndarray:
        return self._windows[0][0].pos[slots, NEWEST]  # every window of a key has seen the same events

    def expire(self, shard: int) -> list[str]:
        """Forget the keys of ``shard`` idle for longer than the ttl in its event time; returns them."""
        clock = self.clock(shard)
        if self.key_ttl_ms <= 0 or clock is None:
            return []
        slots = self._slots_of(shard)
        gone = slots[clock - self._newest(slots) > self.key_ttl_ms]
        keys = self._held_keys(gone)
        self._forget(gone)
        return keys

    def _slots_for(self, keys: Iterable[str]) -> np.ndarray:
        """Each key's slot, taking a free one (or a new one) for a key not seen yet."""
        keys = keys if isinstance(keys, list) else list(keys)
        encoded = encode_keys(keys)
        slots = self._index.find(encoded)
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            self._take_slots(keys, encoded, slots, missing)
        if len(self._keys) > len(self._shard):
            size = len(self._shard)
            while size < len(self._keys):
                size *= 2
            self._shard = np.resize(self._shard, size)
            self._dirty = np.concatenate([self._dirty, np.zeros(size - len(self._dirty), dtype=bool)])
            self._held = np.concatenate([self._held, np.zeros(size - len(self._held), dtype=bool)])
        self._held[slots] = True
        return slots

    def _take_slots(self, keys: list[str], encoded: EncodedKeys, slots: np.ndarray, missing: np.ndarray) -> None:
        """Fill in ``slots`` at ``missing``: a free slot (or a new one) per new key, shared by its repeats."""
        names, free = self._keys, self._free
        taken: dict[str, int] = {}
        rows = []
        for i in missing.tolist():
            key = keys[i]
            slot = taken.get(key)
            if slot is None:
                if free:
                    slot = free.pop()
                    names[slot] = key
                else:
                    slot = len(names)
                    names.append(key)
                taken[key] = slot
                rows.append(i)
            slots[i] = slot
        first = np.asarray(rows, dtype=np.int64)
        self._index.add(encoded, first, slots[first])

    def _held_slots(self, keys: Iterable[str]) -> np.ndarray:
        """The slots of keys with state; KeyError for one without."""
        listed = keys if isinstance(keys, list) else list(keys)
        slots = self._index.find(encode_keys(listed))
        if len(slots) and slots.min() < 0:
            raise KeyError(listed[int(np.argmin(slots))])
        return slots

    def _held_keys(self, slots: np.ndarray) -> list[str]:
        keys = [self._keys[s] for s in slots.tolist()]
        assert None not in keys, "a free slot among held ones"
        return cast(list[str], keys)

    def _slots_of(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self._held & (self._shard == shard))

    def keys(self, shard: int) -> list[str]:
        """Keys with state in ``shard``."""
        return self._held_keys(self._slots_of(shard))

    def dirty(self, shard: int) -> list[str]:
        """Keys of ``shard`` updated (or loaded) since its last ``clean``."""
        return self._held_keys(self._dirty_slots(shard))

    def _dirty_slots(self, shard: int) -> np.ndarray:
        slots = self._slots_of(shard)
        return slots[self._dirty[slots]]

    def clean(self, shard: int) -> None:
        """Mark every key of ``shard`` as saved."""
        self._dirty[self._slots_of(shard)] = False

    def export(self, keys: Sequence[str], head: bytes = b"") -> list[bytes]:
        """The stored form of each key's windows (``features.snapshot``), in the order given.

        Each starts with ``head`` (whole 8-byte words), the caller's framing.
        """
        return pack([state for state, *_ in self._windows], self._held_slots(keys), head)

    def export_dirty(self, shard: int, head: bytes = b"") -> tuple[list[str], list[bytes]]:
        """``dirty`` keys of ``shard`` and their ``export``, in one pass over their slots (a checkpoint)."""
        slots = self._dirty_slots(shard)
        return self._held_keys(slots), pack([state for state, *_ in self._windows], slots, head)

    def load(self, records: Sequence[tuple[str, bytes]], shard: int, legacy: bool = False, skip: int = 0) -> None:
        """Set each key's windows to a stored form from ``export``, as keys of ``shard``.

        ``legacy``: the records are in the layout of changelog formats 1-2
        (``features.snapshot``); ``skip``: the bytes of their ``head``.
        Raises StateFormatError, before any key changes, if a record does not
        fit this spec. Loaded keys are clean: the record they were loaded from stays their
        latest version until an event changes them.
        """
        if not records:
            return
        states = [w[0] for w in self._windows]
        parsed = parse(states, [r for _, r in records], legacy, skip)
        slots = self._slots_for(k for k, _ in records)
        write(states, [w[3] for w in self._windows], slots, parsed)
        self._shard[slots] = shard
        self._dirty[slots] = False

    def mark_dirty(self, keys: Iterable[str]) -> None:
        """Count these held keys as changed: the next save of their shard includes them."""
        self._dirty[self._held_slots(keys)] = True

    def reserve(self, keys: int) -> None:
        """Room for ``keys`` more keys in one step (a restore of many keys grows once, not once per doubling)."""
        needed = len(self._keys) - len(self._free) + keys
        for state, *_ in self._windows:
            state.grow_slots(needed)

    def drop(self, shard: int) -> int:
        """Forget every key of ``shard``, and its clock (its partition moved away); returns how many."""
        slots = self._slots_of(shard)
        self._forget(slots)
        if shard < len(self._clock):
            self._clock[shard] = NO_TIME
        return len(slots)

    def _forget(self, slots: np.ndarray) -> None:
        self._index.remove(encode_keys(self._held_keys(slots)))
        for slot in slots.tolist():
            self._keys[slot] = None
            self._free.append(slot)
        for state, *_ in self._windows:
            state.release(slots)
        self._dirty[slots] = False
        self._held[slots] = False

    @property
    def nbytes(self) -> int:
        """Bytes held by the window state: per-key arrays (spare rows included) and the ring blocks in use."""
        return sum(state.nbytes for state, *_ in self._windows)

    def key_bytes(self, keys: Sequence[str]) -> int:
        """Bytes the window state of ``keys`` takes: their ring blocks and their rows of the per-key arrays."""
        slots = self._held_slots(keys)
        return sum(state.key_bytes(slots) for state, *_ in self._windows)

    def held(self, key: str) -> list[int]:
        """How many events each window holds for ``key`` (for tests and memory accounting)."""
        slot = int(self._held_slots([key])[0])
        return [state.key_count(slot) for state, *_ in self._windows]
