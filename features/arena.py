"""Rings of different lengths in one flat array: size classes, free lists and growth.

Each key's ring for a window is a block of words (its event times, each
field's values, and for long rings the minimum and maximum of each stretch
of the ring, ``features.kernel``) inside one float64 array per window,
so that a key holding 50 events takes a 56-entry block while a busy key
takes a larger one, and no key pays for the busiest. Capacities come from
size classes 1.25x apart, so a block wastes at most a fifth of itself; a
freed block goes on its class's free list and is reused by the next key of
that class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

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
# Free blocks are compacted away once they are half the array's words and at least this many (64 MiB).
COMPACT_WORDS = 8 * 2**20


def ring_class(needed: np.ndarray) -> np.ndarray:
    """The smallest block capacity holding ``needed`` entries, elementwise."""
    return CLASSES[np.searchsorted(CLASSES, needed)]


class Arena:
    """Blocks of float64 words, handed out and taken back by capacity class; ``words_of`` gives a class's words."""

    def __init__(self, words_of: Callable[[np.ndarray], np.ndarray], words: int = 4096) -> None:
        self.words_of = words_of
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
        words = self.words_of(caps)
        fresh: list[np.ndarray] = []
        for cap in np.unique(caps).tolist():
            idx = np.flatnonzero(caps == cap)
            free = self.free.get(cap, [])
            take = min(len(free), len(idx))
            if take:
                offs[idx[:take]] = free[-take:]
                del free[-take:]
                self.free_words -= int(words[idx[:take]].sum())
            fresh.append(idx[take:])
        rest = np.concatenate(fresh) if fresh else np.zeros(0, dtype=np.int64)
        if len(rest):
            sizes = words[rest]
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
        self.free_words += int(self.words_of(caps).sum())

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
    def wasteful(self) -> bool:
        """Whether free blocks are half the words handed out: keys that grew through the classes left them behind."""
        return self.free_words >= COMPACT_WORDS and self.free_words * 2 >= self.used

    def compact(self, offs: np.ndarray, caps: np.ndarray) -> np.ndarray:
        """Copy the blocks in use (at ``offs``, of ``caps``) into a dense array of their size; their new offsets.

        Free blocks are dropped, and the old array with them.
        """
        words = self.words_of(caps)
        order = np.argsort(offs, kind="stable")
        new_offs = np.empty(len(offs), dtype=np.int64)
        new_offs[order] = np.cumsum(words[order]) - words[order]
        total = int(words.sum())
        data = np.empty(max(total, 4096))
        _copy_blocks(self.data, data, offs[order], new_offs[order], words[order])
        self.data, self.used, self.free, self.free_words, self._next = data, total, {}, 0, None
        return new_offs

    @property
    def live_bytes(self) -> int:
        """Bytes of the blocks in use."""
        return (self.used - self.free_words) * 8

    @property
    def nbytes(self) -> int:
        """Bytes of the array, spare words included."""
        return int(self.data.nbytes)


@njit(cache=True)
def _copy_blocks(old, new, offs, new_offs, words):
    for i in range(offs.shape[0]):
        new[new_offs[i]:new_offs[i] + words[i]] = old[offs[i]:offs[i] + words[i]]
