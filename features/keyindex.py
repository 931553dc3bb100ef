"""Each key's slot, found in compiled code: a hash table over the keys' UTF-8 bytes.

At a million keys a dict lookup waits on three or four cache misses (its
index, its entry, the stored key, the slot's int), one lookup after
another. Here a whole batch is looked up in one compiled loop that hints
the table lines and key bytes of the keys ahead (``features.prefetch``), so
the misses of many lookups overlap.

The hash is Python's own ``hash(str)``, keyed per process as a dict's is,
so that keys crafted to collide cost no more here than in a dict. The
table probes linearly and keeps its load at most a half; removal shifts
the entries after a removed one back, so no marker of a removed key is left
behind. Each entry holds a key's slot, hash, and where its bytes are in a
byte arena; the arena is written anew when removed keys' bytes outweigh
the live ones. Keys are found, added and removed by their bytes: the index
keeps nothing per slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from features.prefetch import AHEAD, prefetch

__all__ = ["EncodedKeys", "KeyIndex", "encode_keys"]

# Entry columns: the slot (-1: empty), the key's hash, its first byte in the arena, its length.
SLOT, HASH, START, LENGTH = range(4)
N_ENTRY = 4
EMPTY = -1
# The arena is written anew once removed keys' bytes pass this and the live ones.
COMPACT_ABOVE = 1 << 20


@dataclass(frozen=True)
class EncodedKeys:
    """A batch of keys as the index reads them: UTF-8 bytes end to end, each key's bounds, and hashes."""

    data: np.ndarray  # uint8
    bounds: np.ndarray  # n + 1 offsets into data
    hashes: np.ndarray  # hash(key), int64


def encode_keys(keys: Sequence[str]) -> EncodedKeys:
    """The batch in the index's form.

    ``surrogatepass`` keeps the encoding total and one-to-one over every str.
    """
    n = len(keys)
    hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=n)
    joined = "".join(keys)
    bounds = np.zeros(n + 1, dtype=np.int64)
    if joined.isascii():  # one byte a character: the bounds are the keys' lengths
        np.cumsum(np.fromiter(map(len, keys), dtype=np.int64, count=n), out=bounds[1:])
        return EncodedKeys(np.frombuffer(joined.encode("ascii"), dtype=np.uint8), bounds, hashes)
    encoded = [k.encode("utf-8", "surrogatepass") for k in keys]
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=bounds[1:])
    return EncodedKeys(np.frombuffer(b"".join(encoded), dtype=np.uint8), bounds, hashes)


class KeyIndex:
    """Key bytes -> slot, for keys the caller numbers (the feature store's slots)."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(4, (capacity * 2 - 1).bit_length())
        self._table = np.full((size, N_ENTRY), EMPTY, dtype=np.int64)
        self._arena = np.zeros(1 << 16, dtype=np.uint8)
        self._used = 0  # arena bytes written
        self._dead = 0  # arena bytes of removed keys
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def find(self, keys: EncodedKeys) -> np.ndarray:
        """Each key's slot, -1 for a key not held."""
        return _find(self._table, self._arena, keys.data, keys.bounds, keys.hashes)

    def add(self, keys: EncodedKeys, rows: np.ndarray, slots: np.ndarray) -> None:
        """Hold key ``rows[i]`` of the batch at ``slots[i]``; the keys must be distinct and not held."""
        n = len(rows)
        if n == 0:
            return
        self._reserve(n, int((keys.bounds[rows + 1] - keys.bounds[rows]).sum()))
        self._used = _add(self._table, self._arena, self._used, keys.data, keys.bounds, keys.hashes, rows, slots)
        self.count += n

    def remove(self, keys: EncodedKeys) -> None:
        """Forget these keys (each held); LookupError, after removing the others, for keys not held."""
        n = len(keys.hashes)
        if n == 0:
            return
        freed, missing = _remove(self._table, self._arena, keys.data, keys.bounds, keys.hashes)
        self._dead += freed
        self.count -= n - missing
        if missing:
            raise LookupError(f"{missing} of {n} keys to remove are not held")
        if self._dead > max(COMPACT_ABOVE, self._used - self._dead):
            self._compact()

    def _reserve(self, keys: int, nbytes: int) -> None:
        if (self.count + keys) * 2 > len(self._table):
            size = len(self._table)
            while (self.count + keys) * 2 > size:
                size *= 2
            table = np.full((size, N_ENTRY), EMPTY, dtype=np.int64)
            _rehash(self._table, table)
            self._table = table
        if self._used + nbytes > len(self._arena):
            size = len(self._arena)
            while self._used + nbytes > size:
                size *= 2
            arena = np.zeros(size, dtype=np.uint8)
            arena[: self._used] = self._arena[: self._used]
            self._arena = arena

    def _compact(self) -> None:
        arena = np.zeros(max(1 << 16, 2 * (self._used - self._dead)), dtype=np.uint8)
        self._used = _compact(self._table, self._arena, arena)
        self._arena, self._dead = arena, 0


@njit(cache=True)
def _same(arena, start, data, lo, hi):
    for k in range(hi - lo):  # noqa: SIM110 (numba compiles no generator passed to all())
        if arena[start + k] != data[lo + k]:
            return False
    return True


@njit(cache=True)
def _position(table, arena, data, lo, hi, h):
    """Where the key ``data[lo:hi]`` (hash ``h``) is in the table, -1 if not held."""
    mask = table.shape[0] - 1
    at = h & mask
    while table[at, SLOT] != EMPTY:
        if table[at, HASH] == h and table[at, LENGTH] == hi - lo and _same(arena, table[at, START], data, lo, hi):
            return at
        at = (at + 1) & mask
    return -1


@njit(cache=True)
def _find(table, arena, data, bounds, hashes):
    n = bounds.shape[0] - 1
    _hint_table(table, hashes, 0, min(n, 2 * AHEAD))
    _hint_keys(table, arena, hashes, 0, min(n, AHEAD))
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        if i % AHEAD == 0:  # table lines two runs ahead, and the key bytes their entries point at one run ahead
            _hint_table(table, hashes, i + 2 * AHEAD, min(n, i + 3 * AHEAD))
            _hint_keys(table, arena, hashes, i + AHEAD, min(n, i + 2 * AHEAD))
        at = _position(table, arena, data, bounds[i], bounds[i + 1], hashes[i])
        out[i] = EMPTY if at < 0 else table[at, SLOT]
    return out


@njit(cache=True)
def _hint_table(table, hashes, lo, hi):
    mask = table.shape[0] - 1
    for j in range(lo, hi):
        prefetch(table, (hashes[j] & mask) * N_ENTRY)


@njit(cache=True)
def _hint_keys(table, arena, hashes, lo, hi):
    mask = table.shape[0] - 1
    for j in range(lo, hi):
        at = hashes[j] & mask
        if table[at, SLOT] != EMPTY:
            prefetch(arena, table[at, START])


@njit(cache=True)
def _place(table, slot, h, start, length):
    mask = table.shape[0] - 1
    at = h & mask
    while table[at, SLOT] != EMPTY:
        at = (at + 1) & mask
    table[at, SLOT], table[at, HASH], table[at, START], table[at, LENGTH] = slot, h, start, length


@njit(cache=True)
def _add(table, arena, used, data, bounds, hashes, rows, slots):
    for i in range(rows.shape[0]):
        lo, hi, h = bounds[rows[i]], bounds[rows[i] + 1], hashes[rows[i]]
        arena[used:used + hi - lo] = data[lo:hi]
        _place(table, slots[i], h, used, hi - lo)
        used += hi - lo
    return used


@njit(cache=True)
def _remove(table, arena, data, bounds, hashes):
    """Remove each key's entry, shifting back the entries after it that would no longer be found.

    Returns the key bytes freed, and how many keys were not held (skipped).
    """
    mask = table.shape[0] - 1
    freed, missing = 0, 0
    for i in range(hashes.shape[0]):
        at = _position(table, arena, data, bounds[i], bounds[i + 1], hashes[i])
        if at < 0:
            missing += 1
            continue
        freed += table[at, LENGTH]
        gap = at
        nxt = (gap + 1) & mask
        while table[nxt, SLOT] != EMPTY:
            home = table[nxt, HASH] & mask
            # the entry at nxt may fill the gap unless its home lies cyclically in (gap, nxt]
            if (nxt - home) & mask >= (nxt - gap) & mask:
                for c in range(N_ENTRY):
                    table[gap, c] = table[nxt, c]
                gap = nxt
            nxt = (nxt + 1) & mask
        table[gap, SLOT] = EMPTY
    return freed, missing


@njit(cache=True)
def _rehash(old, new):
    for at in range(old.shape[0]):
        if old[at, SLOT] != EMPTY:
            _place(new, old[at, SLOT], old[at, HASH], old[at, START], old[at, LENGTH])


@njit(cache=True)
def _compact(table, old, new):
    """Copy the held keys' bytes to the start of ``new``, in table order; returns the bytes written."""
    used = 0
    for at in range(table.shape[0]):
        if table[at, SLOT] != EMPTY:
            start, length = table[at, START], table[at, LENGTH]
            new[used:used + length] = old[start:start + length]
            table[at, START] = used
            used += length
    return used
