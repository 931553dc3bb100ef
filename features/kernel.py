"""The window update as a compiled batch kernel over per-key rings and running summaries.

Each key keeps, per window, a ring of its held events (times and values, in
a block of ``features.arena`` sized for that key) and a few running
summaries per field: the mean and the sum of squared deviations (Welford's
update, for adding and for removing a value), the EWMA numerator, and the
ring positions of the minimum and the maximum. Every aggregate costs O(1)
per event, except that when the minimum (or maximum) leaves the window its
successor is found by a scan. A ring of more than ``BLOCKS_ABOVE`` entries
also keeps the minimum and maximum of each stretch of ~sqrt(capacity)
positions, so that the scan reads whole stretches by their summary: at
worst O(sqrt(window)) per event, for values that only rise or only fall.

Removing a value from a running sum leaves rounding behind, so the
summaries are recomputed exactly from the held values every time as many
events have left as the window held at the last recompute (O(1) amortised),
and at once when a field's spread collapses below ``RESHIFT`` of the largest
sum of squares seen since, where that rounding would show (a window that
slides from one level to another). Values are taken relative to a shift,
the newest value at the last recompute, which follows the level of the
data: for values around 1e6 with a spread of 0.01 the deviations are exact,
and a constant window has a variance of exactly 0.

numba compiles the kernel (cached on disk after the first run) and runs it
over a whole micro-batch in arrival order. Every ``AHEAD`` events it hints
the rows and ring entries of the next ``AHEAD`` (``features.prefetch``): over
a million keys those lines are in no cache, and hinted together their
fetches overlap instead of waiting one event at a time. All fields of an event enter and
leave a window together, so ring positions are per key, summaries per key
and field. Events are processed one after another inside the kernel, which
is why a batch of one and a batch of 5,000 give the same bits; the
recompute points depend on a key's events alone, and are saved with its
state, so a restored key continues with the same bits too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from features import arena as arenas
from features.arena import Arena, ring_class
from features.prefetch import AHEAD, prefetch

__all__ = ["AGG_CODES", "N_SUMMARY", "WindowState", "reserve", "running_clocks", "update_windows"]

# Aggregate name -> code the kernel switches on.
AGG_CODES = {"mean": 0, "std": 1, "min": 2, "max": 3, "sum": 4, "count": 5, "last": 6, "delta": 7, "ewma": 8}
# Per key and window (``pos``): oldest ring position, events held, removals
# left before the next recompute, newest event time, block offset, block
# capacity, and the length of the ring's stretches (0: none kept).
HEAD, COUNT, COUNTDOWN, NEWEST, OFFSET, CAP, STRETCH = range(7)
N_POS = 7
# Per key, window and field (``summ``): shift, mean and sum of squared
# deviations of the shifted values, EWMA numerator, largest sum of squares since the last recompute.
SHIFT, MEAN, M2, EWN, PEAK = range(5)
N_SUMMARY = 5
# A field is recomputed when its sum of squared deviations falls below this share of PEAK.
RESHIFT = 1e-3
# Rings longer than this keep their stretches' minimum and maximum.
BLOCKS_ABOVE = 64


class WindowState:
    """Per-key state of one window spec over F fields: ring blocks, positions and running summaries.

    ``size`` > 0 makes a count window, whose rings all hold ``size + 1``
    entries; a time window's ring is sized per key and grows with it.
    """

    def __init__(self, n_fields: int, size: int, slots: int = 64) -> None:
        self.n_fields = n_fields
        self.size = size
        self.pos = np.zeros((slots, N_POS), dtype=np.int64)
        self.summ = np.zeros((slots, n_fields, N_SUMMARY))
        self.ext = np.zeros((slots, n_fields, 2), dtype=np.int64)  # ring positions of the min and the max
        self.arena = Arena(self.block_words)
        self._tally = np.zeros(slots, dtype=np.int64)  # scratch for ``reserve``, zero between calls
        self.rows = 0  # rows of ``pos`` ever asked for: no key beyond them holds a block
        # The sweep in progress: its current list of blocks in offset order
        # (owner slots, offsets, capacities, words), the next one to move, and
        # where the next list starts (every block in use below it is listed).
        self._sweep: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._sweep_next = 0
        self._sweep_from = 0

    @property
    def slots(self) -> int:
        return self.pos.shape[0]

    def grow_slots(self, needed: int) -> None:
        """Room for at least ``needed`` keys (new keys start empty, with no block).

        The arrays grow eightfold: the copy is what costs (a tenth of a
        second per million keys), while rows not yet written take no memory.
        """
        self.rows = max(self.rows, needed)
        size = self.slots
        while size < needed:
            size *= 8
        if size == self.slots:
            return
        for name in ("pos", "summ", "ext", "_tally"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def block_words(self, caps: np.ndarray) -> np.ndarray:
        """Words of a ring block of each capacity (``ring_words``)."""
        return ring_words(caps, self.n_fields)

    def capacity_for(self, needed: np.ndarray) -> np.ndarray:
        """The ring capacity a key needing ``needed`` entries gets."""
        return np.full(len(needed), self.size + 1, dtype=np.int64) if self.size > 0 else ring_class(needed)

    def fit(self, slots: np.ndarray, needed: np.ndarray) -> None:
        """Give each of ``slots`` (distinct) a ring of at least ``needed`` entries, keeping what it holds."""
        if len(slots) == 0:
            return
        caps = self.capacity_for(needed)
        old_offs, old_caps = self.pos[slots, OFFSET].copy(), self.pos[slots, CAP].copy()
        offs = self.arena.allocate(caps)
        _move(self.pos, self.ext, self.arena.data, self.arena.ints, slots, offs, caps, stretches(caps))
        moved = old_caps > 0
        self.arena.release(old_offs[moved], old_caps[moved])

    def compact_step(self, budget: int) -> None:
        """Move up to ``budget`` words of blocks towards the start, starting a sweep when free blocks are many.

        A sweep lists the blocks in use ``SWEEP_SPAN`` words of the array at
        a time, in offset order, and slides each one down to the arena's
        cursor, as many lists per call as the budget allows. Blocks given
        out while it runs are appended where the array ends, so a later list
        takes them; the sweep ends when a list finishes at the end of the
        array. Features never change: a block keeps its bytes.
        """
        arena = self.arena
        if not arena.sweeping:
            if not arena.wasteful:
                return
            arena.begin_sweep()
            self._sweep_from = 0
            budget -= self._take_sweep_list()
        while True:
            assert self._sweep is not None
            slots, offs, caps, words = self._sweep
            self._sweep_next, arena.cursor, spent = _slide(arena.data, self.pos, slots, offs, caps, words,
                                                           self._sweep_next, arena.cursor, budget)
            budget -= spent
            if self._sweep_next < len(slots):
                return
            if self._sweep_from == arena.used:  # the list just finished reached the end of the array
                break
            budget -= self._take_sweep_list()
            if budget <= 0:
                return
        arena.end_sweep()
        self._sweep = None

    def _take_sweep_list(self) -> int:
        """The sweep's next list: the blocks in use in the next span of the array, in offset order; its cost in words.

        Finding them reads a row of ``pos`` per key, which counts as a word each.
        """
        lo, used = self._sweep_from, self.arena.used
        hi = used if used - lo <= arenas.SWEEP_SPAN else lo + arenas.SWEEP_SPAN
        held = _blocks_between(self.pos, self.rows, lo, hi)
        held = held[np.argsort(self.pos[held, OFFSET])]
        offs, caps = self.pos[held, OFFSET], self.pos[held, CAP]
        self._sweep = (held, offs, caps, self.block_words(caps))
        self._sweep_next, self._sweep_from = 0, hi
        return self.rows

    def release(self, slots: np.ndarray) -> None:
        """Forget ``slots``: their blocks go back to the free lists."""
        held = slots[self.pos[slots, CAP] > 0]
        self.arena.release(self.pos[held, OFFSET], self.pos[held, CAP])
        self.pos[slots] = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the per-key arrays and of the blocks in use."""
        return int(self.pos.nbytes + self.summ.nbytes + self.ext.nbytes + self.arena.live_bytes)

    def key_bytes(self, slots: np.ndarray) -> int:
        """Bytes these keys take: their blocks and their rows of the per-key arrays."""
        return int((self.block_words(self.pos[slots, CAP]).sum() + row_words(self.n_fields) * len(slots)) * 8)

    def key_count(self, slot: int) -> int:
        return int(self.pos[slot, COUNT])


def reserve(state: WindowState, slots: np.ndarray) -> None:
    """Grow ``state`` so that a batch of ``slots`` fits; after this the kernel allocates nothing and cannot fail."""
    state.grow_slots(int(slots.max()) + 1 if len(slots) else 0)
    short, needed = _short(slots, state.pos, state.size + 1 if state.size > 0 else 0, state._tally)
    before = state.arena.used
    state.fit(short, needed)
    # Four times what this batch handed out: a sweep outpaces the blocks given out meanwhile, so it ends.
    state.compact_step(arenas.SWEEP_WORDS + 4 * (state.arena.used - before))


def update_windows(
    state: WindowState, slots: np.ndarray, times: np.ndarray, values: np.ndarray, span_ms: float,
    keep: float, aggs: np.ndarray, out: np.ndarray, col0: int, stride: int,
    clocks: np.ndarray, ttl_ms: int, held: np.ndarray,
) -> None:
    """Fold a batch into one window spec's state and write its aggregates into ``out``.

    A count window evicts beyond its size; a time window beyond ``span_ms``.
    ``reserve`` must have been called for this batch (the store reserves every
    window before it updates any). With ``ttl_ms`` > 0, a key whose newest
    event is more than ``ttl_ms`` behind its event's ``clocks`` entry (its
    shard's event-time clock) starts empty. ``held[i]`` is raised to the
    events the window holds after event ``i``.
    """
    _kernel(slots, times, values, state.size, span_ms, keep, aggs, out, col0, stride, clocks, ttl_ms, held,
            state.pos, state.summ, state.ext, state.arena.data, state.arena.ints)


def ring_words(caps: np.ndarray, n_fields: int) -> np.ndarray:
    """Words of a ring block of each capacity: times, values, and the stretches' minima and maxima."""
    stretch = stretches(caps)
    count = np.where(stretch > 0, -(-caps // np.maximum(stretch, 1)), 0)
    return caps * (1 + n_fields) + 2 * n_fields * count


def row_words(n_fields: int) -> int:
    """Words of a key's row of the per-key arrays: positions, summaries, and the extremes' positions."""
    return N_POS + n_fields * (N_SUMMARY + 2)


def stretches(caps: np.ndarray) -> np.ndarray:
    """The stretch length of rings of each capacity: the power of two at or above sqrt(capacity); 0 up to BLOCKS_ABOVE."""
    return _stretches(np.ascontiguousarray(caps, dtype=np.int64))


@njit(cache=True)
def _stretches(caps):
    out = np.zeros(caps.shape[0], dtype=np.int64)
    for i in range(caps.shape[0]):
        if caps[i] > BLOCKS_ABOVE:
            b = 1
            while b * b < caps[i]:
                b *= 2
            out[i] = b
    return out


@njit(cache=True)
def running_clocks(shards: np.ndarray, times: np.ndarray, clock: np.ndarray) -> np.ndarray:
    """Each event's shard clock (the newest event time of its shard so far, the event included).

    ``clock`` holds each shard's clock before the batch and is advanced in place.
    """
    out = np.empty(times.shape[0], dtype=np.int64)
    for i in range(times.shape[0]):
        s = shards[i]
        if times[i] > clock[s]:
            clock[s] = times[i]
        out[i] = clock[s]
    return out


@njit(cache=True)
def _short(slots, pos, fixed, tally):
    """The distinct slots of a batch whose rings are too small for it, and the entries each needs.

    A time window needs room for what a key holds plus all its events of the
    batch (evictions are not known before the kernel runs).
    """
    n = slots.shape[0]
    short = np.empty(n, dtype=np.int64)
    needed = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        tally[slots[i]] += 1
    for i in range(n):
        s = slots[i]
        if tally[s] > 0:
            need = fixed if fixed > 0 else pos[s, COUNT] + tally[s]
            if pos[s, CAP] < need:
                short[m], needed[m] = s, need
                m += 1
            tally[s] = 0
    return short[:m], needed[:m]


@njit(cache=True)
def _move(pos, ext, ar, ai, slots, offs, caps, stretch):
    """Copy each slot's held events, oldest first, to the start of its new block."""
    n_fields = ext.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        head, count, off, cap = pos[s, HEAD], pos[s, COUNT], pos[s, OFFSET], pos[s, CAP]
        new, ncap = offs[i], caps[i]
        for k in range(count):
            p = (head + k) % cap
            ai[new + k] = ai[off + p]
            for f in range(n_fields):
                ar[new + ncap * (1 + f) + k] = ar[off + cap * (1 + f) + p]
        for f in range(n_fields):
            for e in range(2):
                ext[s, f, e] = (ext[s, f, e] - head) % cap if count > 0 else 0
        pos[s, HEAD], pos[s, OFFSET], pos[s, CAP], pos[s, STRETCH] = 0, new, ncap, stretch[i]
        _summarise_stretches(s, pos, ar, n_fields)


@njit(cache=True)
def _blocks_between(pos, rows, lo, hi):
    # The keys among pos[:rows] whose block starts in [lo, hi), in key order (one pass over the rows).
    out = np.empty(rows, dtype=np.int64)
    n = 0
    for s in range(rows):
        off = pos[s, OFFSET]
        if lo <= off < hi and pos[s, CAP] > 0:
            out[n] = s
            n += 1
    return out[:n].copy()


@njit(cache=True)
def _slide(data, pos, slots, offs, caps, words, start, cursor, budget):
    # Blocks slots[start:] (ascending offsets) slide down to ``cursor`` until
    # ``budget`` words are spent, each block looked at counting one more; a
    # block its owner has moved or dropped since the list was taken is
    # skipped. Copying forward, downwards, in ascending order overwrites no
    # block not yet moved. Returns the next index, the cursor and the words spent.
    i = start
    spent = 0
    while i < slots.shape[0] and spent < budget:
        s = slots[i]
        if pos[s, OFFSET] == offs[i] and pos[s, CAP] == caps[i]:
            w = words[i]
            o = offs[i]
            if o != cursor:
                for k in range(w):
                    data[cursor + k] = data[o + k]
                pos[s, OFFSET] = cursor
                spent += w
            cursor += w
        spent += 1
        i += 1
    return i, cursor, spent


@njit(cache=True)
def _summarise_stretches(s, pos, ar, n_fields):
    """Each stretch's minimum and maximum over the held entries of a ring that starts at position 0."""
    b = pos[s, STRETCH]
    if b == 0:
        return
    count, off, cap = pos[s, COUNT], pos[s, OFFSET], pos[s, CAP]
    n_blocks = (cap + b - 1) // b
    at = off + cap * (1 + n_fields)
    for f in range(n_fields):
        base = off + cap * (1 + f)
        for j in range((count + b - 1) // b):
            lo = hi = ar[base + j * b]
            for p in range(j * b + 1, min((j + 1) * b, count)):
                x = ar[base + p]
                lo = min(lo, x)
                hi = max(hi, x)
            ar[at + f * n_blocks + j] = lo
            ar[at + (n_fields + f) * n_blocks + j] = hi


@njit(cache=True)
def _recompute(s, f, head, count, off, cap, keep, summ, ar):
    """Exact summaries of field ``f`` from the held values, shifted by the newest."""
    base = off + cap * (1 + f)
    shift = ar[base + (head + count - 1) % cap]
    total = 0.0
    for k in range(count):
        total += ar[base + (head + k) % cap] - shift
    mean = total / count
    m2 = 0.0
    ewn = 0.0
    for k in range(count):
        x = ar[base + (head + k) % cap]
        d = x - shift - mean
        m2 += d * d
        ewn = ewn * keep + x
    summ[s, f, SHIFT], summ[s, f, MEAN], summ[s, f, M2], summ[s, f, EWN] = shift, mean, m2, ewn
    summ[s, f, PEAK] = m2 + count * mean * mean


@njit(cache=True)
def _rescan(s, f, head, count, off, cap, stretch, ext, ar):
    """Ring positions of the minimum and the maximum of field ``f``, the newest among ties.

    Stretches wholly held are read by their summary (``stretch`` > 0): every
    entry of such a stretch was written after its first one, which reset it.
    The newest stretch holding each extreme is then scanned for its position.
    """
    base = off + cap * (1 + f)
    n_fields = ext.shape[1]
    n_blocks = (cap + stretch - 1) // stretch if stretch > 0 else 0
    at = off + cap * (1 + n_fields)
    lo = hi = ar[base + head]
    lo_k = hi_k = 0  # where the stretch holding the newest extreme starts (k: age from the oldest)
    lo_n = hi_n = 1  # and its length
    k = 0
    while k < count:
        p = (head + k) % cap
        if stretch > 0 and p % stretch == 0 and k + min(stretch, cap - p) <= count:
            j = p // stretch
            length = min(stretch, cap - p)
            x_lo, x_hi = ar[at + f * n_blocks + j], ar[at + (n_fields + f) * n_blocks + j]
            if x_lo <= lo:
                lo, lo_k, lo_n = x_lo, k, length
            if x_hi >= hi:
                hi, hi_k, hi_n = x_hi, k, length
            k += length
        else:
            x = ar[base + p]
            if x <= lo:
                lo, lo_k, lo_n = x, k, 1
            if x >= hi:
                hi, hi_k, hi_n = x, k, 1
            k += 1
    for e, start, length, value in ((0, lo_k, lo_n, lo), (1, hi_k, hi_n, hi)):
        for q in range(start + length - 1, start - 1, -1):  # the newest entry of the stretch equal to it
            p = (head + q) % cap
            if ar[base + p] == value:
                ext[s, f, e] = p
                break


@njit(cache=True)
def _prefetch_events(slots, lo, hi, pos, summ, ext, ar, ai):
    """Hint the lines events ``lo`` to ``hi - 1`` read: their summaries, extremes and ring entries."""
    n_fields = summ.shape[1]
    row, ext_row = n_fields * N_SUMMARY, n_fields * 2
    for i in range(lo, hi):
        s = slots[i]
        for w in range(0, row, 8):
            prefetch(summ, s * row + w)
        prefetch(summ, s * row + row - 1)
        prefetch(ext, s * ext_row)
        prefetch(ext, s * ext_row + ext_row - 1)
        head, count, off, cap = pos[s, HEAD], pos[s, COUNT], pos[s, OFFSET], pos[s, CAP]
        if cap > 0:
            p = (head + count) % cap  # where the event goes; eviction reads at head
            prefetch(ai, off + p)
            prefetch(ai, off + head)
            for f in range(n_fields):
                base = off + cap * (1 + f)
                prefetch(ar, base + p)
                prefetch(ar, base + head)


@njit(cache=True)
def _kernel(slots, times, values, size, span_ms, keep, aggs, out, col0, stride, clocks, ttl, held,
            pos, summ, ext, ar, ai):
    n, n_fields = values.shape
    rescan = np.zeros(n_fields, dtype=np.bool_)  # per field: an extreme left, its successor is to be found
    for i in range(n):
        if i % AHEAD == 0:  # the lines of the run after this one (and at first, of this one too)
            _prefetch_events(slots, 0 if i == 0 else i + AHEAD, min(n, i + 2 * AHEAD), pos, summ, ext, ar, ai)
        s = slots[i]
        t = times[i]
        head, count, countdown, newest = pos[s, HEAD], pos[s, COUNT], pos[s, COUNTDOWN], pos[s, NEWEST]
        off, cap, stretch = pos[s, OFFSET], pos[s, CAP], pos[s, STRETCH]
        n_blocks = (cap + stretch - 1) // stretch if stretch > 0 else 0
        stretches_at = off + cap * (1 + n_fields)
        if ttl > 0 and count > 0 and clocks[i] - newest > ttl:
            head, count, countdown = 0, 0, 0  # idle past the ttl: the key starts over
        if count == 0:
            newest = t
            for f in range(n_fields):
                summ[s, f, SHIFT], summ[s, f, MEAN], summ[s, f, M2] = values[i, f], 0.0, 0.0
                summ[s, f, EWN], summ[s, f, PEAK] = 0.0, 0.0
        elif t > newest:
            newest = t
        # push the newest value of every field
        p = (head + count) % cap
        ai[off + p] = t
        count += 1
        for f in range(n_fields):
            x = values[i, f]
            base = off + cap * (1 + f)
            ar[base + p] = x
            y = x - summ[s, f, SHIFT]
            mean = summ[s, f, MEAN]
            d = y - mean
            mean += d / count
            m2 = summ[s, f, M2] + d * (y - mean)
            summ[s, f, MEAN], summ[s, f, M2] = mean, m2
            square = m2 + count * mean * mean
            if square > summ[s, f, PEAK]:
                summ[s, f, PEAK] = square
            summ[s, f, EWN] = summ[s, f, EWN] * keep + x
            if count == 1 or x <= ar[base + ext[s, f, 0]]:
                ext[s, f, 0] = p
            if count == 1 or x >= ar[base + ext[s, f, 1]]:
                ext[s, f, 1] = p
            if stretch > 0:  # the stretch's summary starts over at its first entry
                lo_at = stretches_at + f * n_blocks + p // stretch
                hi_at = lo_at + n_fields * n_blocks
                if p % stretch == 0 or x < ar[lo_at]:
                    ar[lo_at] = x
                if p % stretch == 0 or x > ar[hi_at]:
                    ar[hi_at] = x
        # evict the oldest while the window is over its size or span
        evicted = False
        rescan[:] = False
        while count > 1 and ((size > 0 and count > size) or (size <= 0 and ai[off + head] <= newest - span_ms)):
            weight = keep ** (count - 1)  # the oldest value's EWMA weight
            for f in range(n_fields):
                x = ar[off + cap * (1 + f) + head]
                y = x - summ[s, f, SHIFT]
                mean = summ[s, f, MEAN]
                reduced = mean - (y - mean) / (count - 1)
                summ[s, f, M2] -= (y - mean) * (y - reduced)
                summ[s, f, MEAN] = reduced
                summ[s, f, EWN] -= x * weight
                if ext[s, f, 0] == head or ext[s, f, 1] == head:
                    rescan[f] = True
            head = (head + 1) % cap
            count -= 1
            countdown -= 1
            evicted = True
        if evicted:
            for f in range(n_fields):
                if countdown <= 0 or summ[s, f, M2] < RESHIFT * summ[s, f, PEAK]:
                    _recompute(s, f, head, count, off, cap, keep, summ, ar)
                if rescan[f]:
                    _rescan(s, f, head, count, off, cap, stretch, ext, ar)
            if countdown <= 0:
                countdown = count
        pos[s, HEAD], pos[s, COUNT], pos[s, COUNTDOWN], pos[s, NEWEST] = head, count, countdown, newest
        if count > held[i]:
            held[i] = count
        newest_at = (head + count - 1) % cap
        ewd = (1.0 - keep ** count) / (1.0 - keep)  # the sum of the EWMA weights (keep = 1 - alpha < 1)
        for f in range(n_fields):
            base = off + cap * (1 + f)
            lo, hi = ar[base + ext[s, f, 0]], ar[base + ext[s, f, 1]]
            shift, mean, m2 = summ[s, f, SHIFT], summ[s, f, MEAN], summ[s, f, M2]
            col = f * stride + col0
            for j in range(aggs.shape[0]):
                a = aggs[j]
                if a == 0:
                    v = shift + mean
                elif a == 1:
                    v = 0.0 if lo == hi or m2 <= 0.0 else math.sqrt(m2 / count)
                elif a == 2:
                    v = lo
                elif a == 3:
                    v = hi
                elif a == 4:
                    v = count * (shift + mean)
                elif a == 5:
                    v = float(count)
                elif a == 6:
                    v = ar[base + newest_at]
                elif a == 7:
                    v = ar[base + newest_at] - ar[base + head]
                else:
                    v = summ[s, f, EWN] / ewd
                out[i, col + j] = v
