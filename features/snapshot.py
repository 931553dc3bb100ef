"""A key's window state as bytes, and back: what the state changelog stores per entity.

Only what cannot be derived is stored: per window, the held event times and
values (oldest first), the front stack's length, the shift the summaries are
taken against, and the newest event time. The summaries themselves are
rebuilt on load by the same combines, in the same order, that the update
kernel used, so a restored key continues with the very same bits as a key
that never left memory.

Layout of one window's block, in 8-byte little-endian words:
``count, front length, newest time, shift[F], times[count], values[F][count]``
(integers as int64, floats as float64); a key's record is its windows'
blocks in spec order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from features.exceptions import FeatureError
from features.kernel import N_COMPONENTS, WindowState, _combine, _single

__all__ = ["Parsed", "StateFormatError", "block_words", "pack", "parse", "write"]


class StateFormatError(FeatureError):
    """A stored key state does not fit the feature spec (another spec, or damaged bytes)."""


def block_words(n_fields: int, counts: np.ndarray) -> np.ndarray:
    """Words of a window block holding ``counts`` events."""
    return 3 + n_fields + counts * (1 + n_fields)


def pack(states: list[WindowState], slots: np.ndarray) -> list[bytes]:
    """The stored form of each slot's state over every window, one ``bytes`` per slot."""
    n = len(slots)
    if n == 0:
        return []
    words = [block_words(s.n_fields, s.pos[slots, 1]) for s in states]
    per_key = np.sum(words, axis=0)
    key_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_key, out=key_start[1:])
    buf = np.empty(int(key_start[-1]), dtype=np.int64)
    at = key_start[:-1].copy()
    for state, w in zip(states, words):
        _pack(slots, state.vals, state.times, state.shift, state.pos, state.capacity, buf, buf.view(np.float64), at)
        at += w
    blob = buf.tobytes()
    bounds = (key_start * 8).tolist()
    return [blob[bounds[i]:bounds[i + 1]] for i in range(n)]


@dataclass(frozen=True)
class Parsed:
    """Stored key states checked against the spec, ready to ``write``."""

    words: np.ndarray  # every record's words, concatenated
    starts: list[np.ndarray]  # per window: where each record's block starts
    max_count: list[int]  # per window: the most events a record holds


def parse(states: list[WindowState], sizes: list[int], records: list[bytes]) -> Parsed:
    """Check ``records`` (from ``pack``) against the windows; StateFormatError if any is malformed.

    ``sizes`` are the windows' sizes (0 for a time window).
    """
    n = len(records)
    lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=n)
    if np.any(lengths % 8):
        raise StateFormatError("a stored key state is not a whole number of 8-byte words")
    words = np.frombuffer(b"".join(records), dtype=np.int64)
    key_end = np.cumsum(lengths // 8)
    at = key_end - lengths // 8
    starts, max_count = [], []
    for state, size in zip(states, sizes):
        if not np.all(at + 3 <= key_end):
            raise StateFormatError("a stored key state ends inside a window block")
        counts, flens = words[at], words[at + 1]
        if np.any(counts < 1) or np.any(flens < 0) or np.any(flens > counts) or (size > 0 and np.any(counts > size)):
            raise StateFormatError("a stored key state holds counts that this window cannot hold")
        starts.append(at)
        max_count.append(int(counts.max()) if n else 0)
        at = at + block_words(state.n_fields, counts)
    if np.any(at != key_end):
        raise StateFormatError("a stored key state's length does not match the feature spec")
    return Parsed(words, starts, max_count)


def write(states: list[WindowState], keeps: list[float], slots: np.ndarray, parsed: Parsed) -> None:
    """Load parsed states into ``slots``, rebuilding the summaries; ``keeps`` are the EWMA decays."""
    if len(slots) == 0:
        return
    floats = parsed.words.view(np.float64)
    for state, keep, start, most in zip(states, keeps, parsed.starts, parsed.max_count):
        state.grow_slots(int(slots.max()) + 1)
        state.grow_capacity(most + 1)
        _unpack(slots, parsed.words, floats, start, keep, state.vals, state.times, state.front, state.back,
                state.shift, state.pos)


@njit(cache=True)
def _pack(slots, vals, ts, shift, pos, cap, out_i, out_f, at):
    n_fields = vals.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        head, count = pos[s, 0], pos[s, 1]
        w = at[i]
        out_i[w], out_i[w + 1], out_i[w + 2] = count, pos[s, 2], pos[s, 3]
        w += 3
        for f in range(n_fields):
            out_f[w + f] = shift[s, f]
        w += n_fields
        for k in range(count):
            out_i[w + k] = ts[s, (head + k) % cap]
        w += count
        for f in range(n_fields):
            for k in range(count):
                out_f[w + f * count + k] = vals[s, f, (head + k) % cap]


@njit(cache=True)
def _unpack(slots, buf_i, buf_f, starts, keep, vals, ts, front, back, shift, pos):
    """Write each block at ring position 0 and rebuild its two stacks as the update kernel built them."""
    n_fields = vals.shape[1]
    one = np.empty(N_COMPONENTS)
    for i in range(slots.shape[0]):
        s = slots[i]
        w = starts[i]
        count, flen = buf_i[w], buf_i[w + 1]
        pos[s, 0], pos[s, 1], pos[s, 2], pos[s, 3] = 0, count, flen, buf_i[w + 2]
        w += 3
        for f in range(n_fields):
            shift[s, f] = buf_f[w + f]
        w += n_fields
        for k in range(count):
            ts[s, k] = buf_i[w + k]
        w += count
        for f in range(n_fields):
            for k in range(count):
                vals[s, f, k] = buf_f[w + f * count + k]
            sh = shift[s, f]
            # the front: suffix summaries of the oldest flen values, newest first
            for k in range(flen - 1, -1, -1):
                _single(vals[s, f, k], sh, keep, one)
                if k == flen - 1:
                    front[s, f, k, :] = one
                else:
                    _combine(one, front[s, f, k + 1], front[s, f, k])
            # the back: the rest folded oldest first
            for k in range(flen, count):
                _single(vals[s, f, k], sh, keep, one)
                if k == flen:
                    back[s, f, :] = one
                else:
                    _combine(back[s, f], one, back[s, f])
