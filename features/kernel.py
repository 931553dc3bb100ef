"""The window update as a compiled batch kernel: two-stacks aggregation over arrays of per-key state.

A window's summary is a monoid (an associative combine of two summaries),
kept with the two-stacks scheme: new values are folded into one running
summary (the back); evictions pop from a stack of suffix summaries (the
front), rebuilt from the held values only when the front runs empty. Each
value is combined a bounded number of times (O(1) amortised per event and
window) and nothing is ever subtracted from a running sum, so nothing drifts.
Mean and variance come from Chan et al.'s pairwise update over values
shifted by the newest value at the last rebuild, which follows the level of
the data: for values around 1e6 with a spread of 0.01 the deviations are
exact, and a constant window has a variance of exactly 0.

numba compiles the kernel (cached on disk after the first run) and runs it
over a whole micro-batch in arrival order. All fields of an event enter and
leave a window together, so ring positions are per key, values per key and
field. Events are processed one after another inside the kernel, which is
why a batch of one and a batch of 5,000 give the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from features.prepared import PreparedArrays, Shapes, nbytes

__all__ = ["AGG_CODES", "WindowState", "reserve", "running_clocks", "update_windows"]

# Aggregate name -> code the kernel switches on.
AGG_CODES = {"mean": 0, "std": 1, "min": 2, "max": 3, "sum": 4, "count": 5, "last": 6, "delta": 7, "ewma": 8}
# A doubling of time-window rings is prepared ahead by a helper thread
# (WindowState.prepare_growth) when its new arrays take at most
# PREPARE_MAX_BYTES: beyond that, holding twice the memory ahead of a doubling
# that may never come matters more than one stall.
PREPARE_MAX_BYTES = 256 * 2**20
# Summary components, the last axis of the summary arrays.
N_, MEAN, M2, SUM, LO, HI, EWN, EWD, DEC = range(9)
N_COMPONENTS = 9


class WindowState:
    """Per-key state of one window spec over F fields: rings of values and the two stacks' summaries."""

    def __init__(self, n_fields: int, capacity: int, slots: int = 64) -> None:
        self.n_fields = n_fields
        self.capacity = capacity
        self.vals = np.zeros((slots, n_fields, capacity))
        self.times = np.zeros((slots, capacity), dtype=np.int64)
        self.front = np.zeros((slots, n_fields, capacity, N_COMPONENTS))
        self.back = np.zeros((slots, n_fields, N_COMPONENTS))
        self.shift = np.zeros((slots, n_fields))
        # per slot: head (oldest position), count, front length, max event time
        self.pos = np.zeros((slots, 4), dtype=np.int64)
        # Rings of twice the capacity, zeroed ahead by a helper thread
        # (``prepare_growth``), so that growing only copies the held values.
        self._next: PreparedArrays | None = None

    @property
    def slots(self) -> int:
        return self.vals.shape[0]

    def grow_slots(self, needed: int) -> None:
        """Room for at least ``needed`` keys (new keys start empty)."""
        size = self.slots
        while size < needed:
            size *= 2
        if size == self.slots:
            return
        for name in ("vals", "times", "front", "back", "shift", "pos"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def grow_capacity(self, needed: int) -> None:
        """Rings of at least ``needed`` values, each unrolled to start at position 0."""
        cap = self.capacity
        while cap < needed:
            cap *= 2
        if cap == self.capacity:
            return
        shapes = self._ring_shapes(cap)
        ready = self._next.take() if self._next is not None and self._next.shapes == shapes else None
        self._next = None
        if ready is None:
            ready = {name: np.empty(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}
        vals, times, front = ready["vals"], ready["times"], ready["front"]
        _unroll(self.vals, self.times, self.front, self.pos, vals, times, front)
        self.vals, self.times, self.front = vals, times, front
        self.pos[:, 0] = 0
        self.capacity = cap

    def prepare_growth(self) -> None:
        """Have the next doubling's rings zeroed by a helper thread, once a ring is half full.

        A doubling writes into fresh memory, and the first write to each page
        costs a page fault: ~10 us a page on a VM whose memory the host has
        not backed yet, ~100 ms for the 38 MB of doubled rings of 1,024 keys.
        Prepared ahead, that leaves the copy of the held values for the
        doubling.
        """
        if int(self.pos[:, 1].max(initial=0)) * 2 < self.capacity:
            return
        shapes = self._ring_shapes(self.capacity * 2)
        if (self._next is None or self._next.shapes != shapes) and nbytes(shapes) <= PREPARE_MAX_BYTES:
            self._next = PreparedArrays(shapes)

    def _ring_shapes(self, capacity: int) -> Shapes:
        """The arrays whose last axis is the ring, at ``capacity``."""
        f64, i64 = np.dtype(np.float64), np.dtype(np.int64)
        return {"vals": ((self.slots, self.n_fields, capacity), f64), "times": ((self.slots, capacity), i64),
                "front": ((self.slots, self.n_fields, capacity, N_COMPONENTS), f64)}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.vals, self.times, self.front, self.back, self.shift, self.pos))

    def key_count(self, slot: int) -> int:
        return int(self.pos[slot, 1])


def reserve(state: WindowState, slots: np.ndarray, size: int) -> None:
    """Grow ``state`` so that a batch of ``slots`` fits; after this the kernel allocates nothing and cannot fail."""
    state.grow_slots(int(slots.max()) + 1 if len(slots) else 0)
    if size > 0:
        state.grow_capacity(size + 1)
    else:
        per_key = np.bincount(slots, minlength=state.slots)
        state.grow_capacity(int(np.max(state.pos[:, 1] + per_key[: state.slots])) + 1)
        state.prepare_growth()


def update_windows(
    state: WindowState, slots: np.ndarray, times: np.ndarray, values: np.ndarray, size: int, span_ms: float,
    keep: float, aggs: np.ndarray, out: np.ndarray, col0: int, stride: int,
    clocks: np.ndarray, ttl_ms: int, held: np.ndarray,
) -> None:
    """Fold a batch into one window spec's state and write its aggregates into ``out``.

    ``size`` > 0 makes a count window; otherwise ``span_ms`` is a time window's span.
    ``reserve`` must have been called for this batch (the store reserves every
    window before it updates any). With ``ttl_ms`` > 0, a key whose newest
    event is more than ``ttl_ms`` behind its event's ``clocks`` entry (its
    shard's event-time clock) starts empty. ``held[i]`` is raised to the
    events the window holds after event ``i``.
    """
    _kernel(slots, times, values, size, span_ms, keep, aggs, out, col0, stride, clocks, ttl_ms, held,
            state.vals, state.times, state.front, state.back, state.shift, state.pos, state.capacity)


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
def _unroll(vals, ts, front, pos, new_vals, new_ts, new_front):
    """Copy each key's held values, oldest first, to position 0 of the larger rings.

    Only held entries are copied (the rest of a ring is never read), so a
    regrow costs in proportion to the state held, not to the new capacity.
    """
    cap = ts.shape[1]
    n_fields = vals.shape[1]
    for s in range(ts.shape[0]):
        head, count = pos[s, 0], pos[s, 1]
        for k in range(count):
            p = (head + k) % cap
            new_ts[s, k] = ts[s, p]
            for f in range(n_fields):
                new_vals[s, f, k] = vals[s, f, p]
                new_front[s, f, k, :] = front[s, f, p, :]


@njit(cache=True)
def _combine(a, b, out):
    """Summary of run ``a`` then run ``b`` (newer) into ``out``; any of them may alias."""
    an, bn = a[N_], b[N_]
    n = an + bn
    delta = b[MEAN] - a[MEAN]
    r = bn / n
    mean = a[MEAN] + delta * r
    m2 = a[M2] + b[M2] + delta * delta * an * r
    total = a[SUM] + b[SUM]
    lo = a[LO] if a[LO] <= b[LO] else b[LO]
    hi = a[HI] if a[HI] >= b[HI] else b[HI]
    ewn = a[EWN] * b[DEC] + b[EWN]
    ewd = a[EWD] * b[DEC] + b[EWD]
    dec = a[DEC] * b[DEC]
    out[N_], out[MEAN], out[M2], out[SUM], out[LO], out[HI] = n, mean, m2, total, lo, hi
    out[EWN], out[EWD], out[DEC] = ewn, ewd, dec


@njit(cache=True)
def _single(x, shift, keep, out):
    out[N_], out[MEAN], out[M2], out[SUM], out[LO], out[HI] = 1.0, x - shift, 0.0, x, x, x
    out[EWN], out[EWD], out[DEC] = x, 1.0, keep


@njit(cache=True)
def _kernel(slots, times, values, size, span_ms, keep, aggs, out, col0, stride, clocks, ttl, held,
            vals, ts, front, back, shift, pos, cap):
    n, n_fields = values.shape
    one = np.empty(N_COMPONENTS)
    q = np.empty(N_COMPONENTS)
    for i in range(n):
        s = slots[i]
        t = times[i]
        head, count, flen = pos[s, 0], pos[s, 1], pos[s, 2]
        if ttl > 0 and count > 0 and clocks[i] - pos[s, 3] > ttl:
            head, count, flen = 0, 0, 0  # idle past the ttl: the key starts over
        if count == 0:
            for f in range(n_fields):
                shift[s, f] = values[i, f]
            pos[s, 3] = t
        elif t > pos[s, 3]:
            pos[s, 3] = t
        # push the newest value of every field
        p = (head + count) % cap
        ts[s, p] = t
        back_empty = count - flen == 0
        for f in range(n_fields):
            x = values[i, f]
            vals[s, f, p] = x
            _single(x, shift[s, f], keep, one)
            if back_empty:
                back[s, f, :] = one
            else:
                _combine(back[s, f], one, back[s, f])
        count += 1
        # evict the oldest while the window is over its size or span
        while count > 1 and ((size > 0 and count > size) or (size <= 0 and ts[s, head] <= pos[s, 3] - span_ms)):
            if flen == 0:
                # rebuild the front from every held value, shifted by the newest
                for f in range(n_fields):
                    sh = vals[s, f, (head + count - 1) % cap]
                    shift[s, f] = sh
                    for k in range(count - 1, -1, -1):
                        pk = (head + k) % cap
                        _single(vals[s, f, pk], sh, keep, one)
                        if k == count - 1:
                            front[s, f, pk, :] = one
                        else:
                            _combine(one, front[s, f, (pk + 1) % cap], front[s, f, pk])
                flen = count
            head = (head + 1) % cap
            flen -= 1
            count -= 1
        pos[s, 0], pos[s, 1], pos[s, 2] = head, count, flen
        if count > held[i]:
            held[i] = count
        newest = (head + count - 1) % cap
        for f in range(n_fields):
            if flen > 0:
                if count - flen > 0:
                    _combine(front[s, f, head], back[s, f], q)
                else:
                    q[:] = front[s, f, head]
            else:
                q[:] = back[s, f]
            base = f * stride + col0
            for j in range(aggs.shape[0]):
                a = aggs[j]
                if a == 0:
                    v = shift[s, f] + q[MEAN]
                elif a == 1:
                    v = 0.0 if q[LO] == q[HI] or q[M2] <= 0.0 else math.sqrt(q[M2] / q[N_])
                elif a == 2:
                    v = q[LO]
                elif a == 3:
                    v = q[HI]
                elif a == 4:
                    v = q[SUM]
                elif a == 5:
                    v = q[N_]
                elif a == 6:
                    v = vals[s, f, newest]
                elif a == 7:
                    v = vals[s, f, newest] - vals[s, f, head]
                else:
                    v = q[EWN] / q[EWD]
                out[i, base + j] = v
