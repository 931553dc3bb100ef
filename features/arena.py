"""Rings of different lengths in one flat array: size classes, free lists and growth.

Each key's ring for a window is a block of ``capacity * width`` words (its
event times, then each field's values) inside one float64 array per window,
so that a key holding 50 events takes a 56-entry block while a busy key
takes a larger one, and no key pays for the busiest. Capacities come from
size classes 1.25x apart, so a block wastes at most a fifth of itself; a
freed block goes on its class's free list and is reused by the next key of
that class.
"""

from __future__ import annotations

import numpy as np

from features.prepared import PreparedArrays

__all__ = ["CLASSES", "Arena", "ring_class"]

# Block capacities: 4..8 one by one, then four steps per doubling (10, 12, 14, 16, 20, ...).
CLASSES = np.array(sorted({*range(4, 9), *(b * m // 4 for b in (2 ** k for k in range(3, 48)) for m in (5, 6, 7, 8))}),
                   dtype=np.int64)
# A new array is prepared ahead by a helper thread (its page faults taken off
# the loop thread) when it takes at most this many bytes; beyond that,
# holding the memory ahead of a growth that may never come matters more.
PREPARE_MAX_BYTES = 256 * 2**20
GROWTH = 1.5  # the array grows by this factor when no block is free


def ring_class(needed: np.ndarray) -> np.ndarray:
    """The smallest block capacity holding ``needed`` entries, elementwise."""
    return CLASSES[np.searchsorted(CLASSES, needed)]


class Arena:
    """Blocks of ``capacity * width`` float64 words, handed out and taken back by capacity class."""

    def __init__(self, width: int, words: int = 4096) -> None:
        self.width = width
        self.data = np.zeros(words)
        self.used = 0  # words handed out at least once (blocks in use or on a free list)
        self.free: dict[int, list[int]] = {}  # capacity -> offsets of free blocks
        self.free_words = 0
        self._next: PreparedArrays | None = None

    @property
    def ints(self) -> np.ndarray:
        """The same words as int64 (event times)."""
        return self.data.view(np.int64)

    def allocate(self, caps: np.ndarray) -> np.ndarray:
        """Offsets of new blocks of ``caps`` entries each (free blocks first, then fresh words)."""
        offs = np.empty(len(caps), dtype=np.int64)
        fresh: list[np.ndarray] = []
        for cap in np.unique(caps).tolist():
            idx = np.flatnonzero(caps == cap)
            free = self.free.get(cap, [])
            take = min(len(free), len(idx))
            if take:
                offs[idx[:take]] = free[-take:]
                del free[-take:]
                self.free_words -= take * cap * self.width
            fresh.append(idx[take:])
        rest = np.concatenate(fresh) if fresh else np.zeros(0, dtype=np.int64)
        if len(rest):
            sizes = caps[rest] * self.width
            ends = self.used + np.cumsum(sizes)
            self._reserve(int(ends[-1]))
            offs[rest] = ends - sizes
            self.used = int(ends[-1])
        return offs

    def release(self, offs: np.ndarray, caps: np.ndarray) -> None:
        """Put blocks back on their classes' free lists."""
        for cap in np.unique(caps).tolist():
            chosen = offs[caps == cap].tolist()
            self.free.setdefault(cap, []).extend(chosen)
            self.free_words += len(chosen) * cap * self.width

    def _reserve(self, words: int) -> None:
        if words > len(self.data):
            size = max(words, int(len(self.data) * GROWTH))
            ready = self._next.take() if self._next is not None else None
            self._next = None
            new = ready["data"] if ready is not None and len(ready["data"]) >= words else np.empty(size)
            new[: self.used] = self.data[: self.used]
            self.data = new
        if self.used * 3 >= len(self.data) * 2 and self._next is None:
            nxt = int(len(self.data) * GROWTH)
            if nxt * 8 <= PREPARE_MAX_BYTES:
                self._next = PreparedArrays({"data": ((nxt,), np.dtype(np.float64))})

    @property
    def live_bytes(self) -> int:
        """Bytes of the blocks in use."""
        return (self.used - self.free_words) * 8

    @property
    def nbytes(self) -> int:
        """Bytes of the array, spare words included."""
        return int(self.data.nbytes)
