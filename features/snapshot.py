"""A key's window state as bytes, and back: what the state changelog stores per entity.

Per window, a key's held event times and values (oldest first) and its
running summaries (``features.kernel``): the summaries carry rounding that
the held values alone cannot reproduce, so they are stored as they are,
and a restored key continues with the very same bits as a key that never
left memory. The ring positions of the minimum and the maximum are derived
on load. Each key's rings are sized on load for what it holds.

Layout of one window's block, in 8-byte little-endian words:
``count, countdown, newest time, summaries[F][N_SUMMARY], times[count], values[F][count]``
(integers as int64, floats as float64); a key's record is its windows'
blocks in spec order.

The layout before (changelog formats 1 and 2, ``legacy``) stored
``count, front length, newest time, shift[F], times[count], values[F][count]``:
such a block is read by recomputing its summaries from the held values.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numba import njit

from features.exceptions import FeatureError
from features.kernel import (
    CAP,
    COUNT,
    COUNTDOWN,
    HEAD,
    N_SUMMARY,
    NEWEST,
    OFFSET,
    STRETCH,
    WindowState,
    _recompute,
    _rescan,
    _summarise_stretches,
    stretches,
)
from features.prefetch import AHEAD, prefetch

__all__ = ["Parsed", "StateFormatError", "block_words", "pack", "parse", "write"]


class StateFormatError(FeatureError):
    """A stored key state does not fit the feature spec (another spec, or damaged bytes)."""


def block_words(n_fields: int, counts: np.ndarray, legacy: bool = False) -> np.ndarray:
    """Words of a window block holding ``counts`` events (``legacy``: in the layout of formats 1-2)."""
    return 3 + n_fields * (1 if legacy else N_SUMMARY) + counts * (1 + n_fields)


# Keys packed at a time. The buffers of a chunk stay in cache and their memory
# is reused: over a million changed keys a checkpoint packed in 0.68-0.71 us
# a key, against 1.0-1.1 in one piece.
PACK_CHUNK = 2048


def pack(states: list[WindowState], slots: np.ndarray, head: bytes = b"") -> list[bytes]:
    """The stored form of each slot's state over every window, one ``bytes`` per slot.

    Each one starts with ``head`` (whole 8-byte words): a caller's framing
    costs no copy of the record (``parse`` skips it).
    """
    if len(head) % 8:
        raise ValueError(f"a record head must be whole 8-byte words, not {len(head)} bytes")
    head_words = np.frombuffer(head, dtype=np.int64)
    records: list[bytes] = []
    for start in range(0, len(slots), PACK_CHUNK):
        records += _pack_chunk(states, slots[start:start + PACK_CHUNK], head_words)
    return records


def _pack_chunk(states: list[WindowState], slots: np.ndarray, head: np.ndarray) -> list[bytes]:
    words = [block_words(s.n_fields, s.pos[slots, COUNT]) for s in states]
    per_key = np.sum(words, axis=0) + len(head)
    key_start = np.zeros(len(slots) + 1, dtype=np.int64)
    np.cumsum(per_key, out=key_start[1:])
    buf = np.empty(int(key_start[-1]), dtype=np.int64)
    _heads(buf, key_start, head)
    at = key_start[:-1] + len(head)
    for state, w in zip(states, words):
        _pack(slots, state.pos, state.summ, state.arena.data, state.arena.ints, buf, buf.view(np.float64), at)
        at += w
    blob = buf.tobytes()
    bounds = (key_start * 8).tolist()
    return [blob[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Parsed:
    """Stored key states checked against the spec, ready to ``write``."""

    words: np.ndarray  # every record's words, concatenated
    starts: list[np.ndarray]  # per window: where each record's block starts
    counts: list[np.ndarray]  # per window: the events each record holds
    legacy: bool  # in the layout of formats 1-2


def parse(states: list[WindowState], records: list[bytes], legacy: bool = False, skip: int = 0) -> Parsed:
    """Check ``records`` (from ``pack``, or in the ``legacy`` layout) against the windows.

    ``skip``: the bytes of each record's head (``pack``). StateFormatError if any is malformed.
    """
    n = len(records)
    lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=n)
    if np.any(lengths % 8) or skip % 8:
        raise StateFormatError("a stored key state is not a whole number of 8-byte words")
    words = np.frombuffer(b"".join(records), dtype=np.int64)
    key_end = np.cumsum(lengths // 8)
    at = key_end - lengths // 8 + skip // 8
    starts, counts = [], []
    for state in states:
        if not np.all(at + 3 <= key_end):
            raise StateFormatError("a stored key state ends inside a window block")
        count, second = words[at], words[at + 1]
        if (np.any(count < 1) or np.any(second < 0) or np.any(second > count)
                or (state.size > 0 and np.any(count > state.size))):
            raise StateFormatError("a stored key state holds counts that this window cannot hold")
        starts.append(at)
        counts.append(count)
        at = at + block_words(state.n_fields, count, legacy)
    if np.any(at != key_end):
        raise StateFormatError("a stored key state's length does not match the feature spec")
    return Parsed(words, starts, counts, legacy)


def write(states: list[WindowState], keeps: list[float], slots: np.ndarray, parsed: Parsed) -> None:
    """Load parsed states into ``slots``, each in rings sized for what it holds; ``keeps`` are the EWMA decays."""
    if len(slots) == 0:
        return
    floats = parsed.words.view(np.float64)
    for state, keep, start, count in zip(states, keeps, parsed.starts, parsed.counts):
        state.grow_slots(int(slots.max()) + 1)
        state.release(slots)
        caps = state.capacity_for(count + 1)  # room for the next event without a move
        offs = state.arena.allocate(caps)
        _unpack(slots, parsed.words, floats, start, offs, caps, stretches(caps), keep, parsed.legacy,
                state.pos, state.summ, state.ext, state.arena.data, state.arena.ints)


@njit(cache=True)
def _heads(buf, key_start, head):
    for i in range(key_start.shape[0] - 1):
        for j in range(head.shape[0]):
            buf[key_start[i] + j] = head[j]


@njit(cache=True)
def _pack(slots, pos, summ, ar, ai, out_i, out_f, at):
    n_fields = summ.shape[1]
    n = slots.shape[0]
    for i in range(n):
        if i % AHEAD == 0:  # the rings of the run after this one (and at first, of this one too)
            _prefetch_rings(slots, 0 if i == 0 else i + AHEAD, min(n, i + 2 * AHEAD), pos, ar, ai, n_fields)
        s = slots[i]
        head, count, off, cap = pos[s, HEAD], pos[s, COUNT], pos[s, OFFSET], pos[s, CAP]
        w = at[i]
        out_i[w], out_i[w + 1], out_i[w + 2] = count, pos[s, COUNTDOWN], pos[s, NEWEST]
        w += 3
        for f in range(n_fields):
            for c in range(N_SUMMARY):
                out_f[w + f * N_SUMMARY + c] = summ[s, f, c]
        w += n_fields * N_SUMMARY
        for k in range(count):
            out_i[w + k] = ai[off + (head + k) % cap]
        w += count
        for f in range(n_fields):
            base = off + cap * (1 + f)
            for k in range(count):
                out_f[w + f * count + k] = ar[base + (head + k) % cap]


@njit(cache=True)
def _prefetch_rings(slots, lo, hi, pos, ar, ai, n_fields):
    """Hint the first line of each field's held entries for keys ``lo`` to ``hi - 1``."""
    for i in range(lo, hi):
        s = slots[i]
        head, off, cap = pos[s, HEAD], pos[s, OFFSET], pos[s, CAP]
        if cap > 0:
            prefetch(ai, off + head)
            for f in range(n_fields):
                prefetch(ar, off + cap * (1 + f) + head)


@njit(cache=True)
def _unpack(slots, buf_i, buf_f, starts, offs, caps, stretch, keep, legacy, pos, summ, ext, ar, ai):
    """Write each block at the start of its new ring, with its summaries (recomputed for a legacy block)."""
    n_fields = summ.shape[1]
    per_field = 1 if legacy else N_SUMMARY
    for i in range(slots.shape[0]):
        s = slots[i]
        w = starts[i]
        count, off, cap = buf_i[w], offs[i], caps[i]
        pos[s, HEAD], pos[s, COUNT], pos[s, NEWEST], pos[s, OFFSET], pos[s, CAP] = 0, count, buf_i[w + 2], off, cap
        pos[s, STRETCH] = stretch[i]
        pos[s, COUNTDOWN] = count if legacy else buf_i[w + 1]
        summ_at = w + 3
        w += 3 + n_fields * per_field
        for k in range(count):
            ai[off + k] = buf_i[w + k]
        w += count
        for f in range(n_fields):
            base = off + cap * (1 + f)
            for k in range(count):
                ar[base + k] = buf_f[w + f * count + k]
            if legacy:
                _recompute(s, f, 0, count, off, cap, keep, summ, ar)
            else:
                for c in range(N_SUMMARY):
                    summ[s, f, c] = buf_f[summ_at + f * N_SUMMARY + c]
        _summarise_stretches(s, pos, ar, n_fields)
        for f in range(n_fields):
            _rescan(s, f, 0, count, off, cap, stretch[i], ext, ar)
