"""Rings of different lengths in one flat array: size classes, free lists and growth.

Each key's ring for a window is a block of words (its event times, each
field's values, and for long rings the minimum and maximum of each stretch
of the ring, ``features.kernel``) inside one float64 array per window,
so that a key holding 50 events takes a 56-entry block while a busy key
takes a larger one, and no key pays for the busiest. Capacities come from
size classes 1.25x apart, so a block wastes at most a fifth of itself; a
freed block goes on its class's free list and is reused by the next key of
that class.

The array lives in a private anonymous memory mapping. Growing it remaps
the pages (``mremap``) instead of copying them, so it costs neither a copy
of the state nor the page faults of fresh memory up front, and the words
beyond those handed out take no memory until they are written.

Keys growing together through the classes leave their smaller blocks free,
and no key may want them again. Once free blocks are a quarter of the words
handed out, a sweep slides the blocks in use towards the start of the array
in offset order, a bounded number of words per batch (``SWEEP_WORDS``, and
four times what the batch handed out), so no batch waits for the whole
state to be copied; the words it frees at the end go back to the system.
The arena keeps the books (which free blocks a sweep will reclaim); the
owner of the blocks moves them (``features.kernel.WindowState``), since
only it knows whose they are.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable

import numpy as np

__all__ = ["CLASSES", "Arena", "ring_class"]

logger = logging.getLogger(__name__)

# Block capacities: 4..8 one by one, then four steps per doubling (10, 12, 14, 16, 20, ...).
CLASSES = np.array(sorted({*range(4, 9), *(b * m // 4 for b in (2 ** k for k in range(3, 48)) for m in (5, 6, 7, 8))}),
                   dtype=np.int64)
INITIAL_WORDS = 4096
GROWTH = 2.0  # the array's length grows by this factor when no block is free (untouched words cost nothing)
# Free blocks are swept away once they are a quarter of the words handed out, and at least this many (64 MiB).
COMPACT_WORDS = 8 * 2**20
# Words a sweep moves per batch (4 MiB: under a millisecond), each block it looks at counting as one more.
SWEEP_WORDS = 2**19
# Words of the array a sweep lists at a time (64 MiB): their blocks are sorted by offset in one go.
SWEEP_SPAN = 2**23
PAGE = mmap.PAGESIZE


def _mapping(words: int) -> mmap.mmap:
    return mmap.mmap(-1, max(words, 1) * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def ring_class(needed: np.ndarray) -> np.ndarray:
    """The smallest block capacity holding ``needed`` entries, elementwise."""
    return CLASSES[np.searchsorted(CLASSES, needed)]


class Arena:
    """Blocks of float64 words, handed out and taken back by capacity class; ``words_of`` gives a class's words."""

    def __init__(self, words_of: Callable[[np.ndarray], np.ndarray], words: int | None = None) -> None:
        self.words_of = words_of
        self._map = _mapping(words or INITIAL_WORDS)
        self.data = np.frombuffer(self._map, dtype=np.float64)
        self.used = 0  # words handed out at least once (blocks in use or on a free list)
        self.free: dict[int, list[int]] = {}  # capacity -> offsets of free blocks
        self.free_words = 0
        # While a sweep runs: blocks below ``cursor`` are packed (or free and on
        # the free lists); free words above it are ``garbage``, reclaimed when
        # the sweep ends rather than handed out again.
        self.sweeping = False
        self.cursor = 0
        self.garbage = 0
        self.sweeps = 0  # sweeps ended

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
        """Put blocks back on their classes' free lists (those a sweep has still to reach: left to it)."""
        if self.sweeping:
            ahead = offs >= self.cursor
            self.garbage += int(self.words_of(caps[ahead]).sum())
            offs, caps = offs[~ahead], caps[~ahead]
        for cap in np.unique(caps).tolist():
            chosen = offs[caps == cap].tolist()
            self.free.setdefault(cap, []).extend(chosen)
        self.free_words += int(self.words_of(caps).sum())

    def _reserve(self, words: int) -> None:
        if words <= len(self.data):
            return
        size = max(words, int(len(self.data) * GROWTH))
        self.data = np.empty(0)  # the pages cannot move while an array over them is alive
        try:
            self._map.resize(size * 8)
        except BufferError:  # one is, somewhere: copy instead
            logger.debug("window state array still referenced; growing it by a copy")
            grown = _mapping(size)
            np.frombuffer(grown, dtype=np.float64)[: self.used] = np.frombuffer(self._map, dtype=np.float64)[: self.used]
            self._map = grown
        finally:  # also when the system refuses the memory: the blocks stay as they were
            self.data = np.frombuffer(self._map, dtype=np.float64)

    @property
    def wasteful(self) -> bool:
        """Whether free blocks are a quarter of the words handed out: keys that grew through the classes left them behind."""
        return self.free_words >= COMPACT_WORDS and self.free_words * 4 >= self.used

    def begin_sweep(self) -> None:
        """Start reclaiming the free blocks: they leave the free lists, and the sweep packs the blocks in use over them."""
        self.sweeping, self.cursor = True, 0
        self.garbage += self.free_words
        self.free, self.free_words = {}, 0

    def end_sweep(self) -> None:
        """Every block in use is below ``cursor``: the words above it are free, and their pages go back to the system."""
        end = self.used
        self.sweeping, self.used, self.garbage = False, self.cursor, 0
        self.sweeps += 1
        start = -(-self.cursor * 8 // PAGE) * PAGE
        if end * 8 > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, end * 8 - start)

    @property
    def live_bytes(self) -> int:
        """Bytes of the blocks in use."""
        return (self.used - self.free_words - self.garbage) * 8

    @property
    def nbytes(self) -> int:
        """Bytes of the array, spare words included."""
        return int(self.data.nbytes)

