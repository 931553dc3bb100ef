"""The compiled key index against a dict: the same slot for every key through adds, removals, growth and rewrites."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from features import keyindex
from features.keyindex import EncodedKeys, KeyIndex, encode_keys


def _colliding(keys: list[str]) -> EncodedKeys:
    """The batch with seven hashes in all, each just below zero: every key shares its home with many,
    and the probe runs wrap from the table's end to its start."""
    hashes = np.array([-1 - zlib.crc32(k.encode("utf-8", "surrogatepass")) % 7 for k in keys], dtype=np.int64)
    return dataclasses.replace(encode_keys(keys), hashes=hashes)


def _find(index: KeyIndex, keys: list[str], encode: Callable[[list[str]], EncodedKeys] = encode_keys) -> list[int]:
    return index.find(encode(keys)).tolist()


def _add(index: KeyIndex, keys: list[str], slots: list[int],
         encode: Callable[[list[str]], EncodedKeys] = encode_keys) -> None:
    index.add(encode(keys), np.arange(len(keys), dtype=np.int64), np.asarray(slots, dtype=np.int64))


def test_keys_that_differ_in_length_bytes_or_encoding_each_keep_their_own_slot() -> None:
    """Prefixes, the empty key, non-ASCII and a lone surrogate are distinct keys, and an unknown key is -1."""
    keys = ["", "a", "ab", "abc", "b", "é", "e\u0301", "\ud800", "\ud83d\ude00", "😀", "sensor-0000001", "sensor-0000010"]
    index = KeyIndex(capacity=4)
    _add(index, keys, list(range(len(keys))))
    assert _find(index, keys) == list(range(len(keys)))
    assert _find(index, ["abcd", "c", "sensor-0000100", "\udfff"]) == [-1] * 4
    assert len(index) == len(keys)
    with pytest.raises(LookupError, match="1 of 2 keys"):  # a key not held is refused, the other one removed
        index.remove(encode_keys(["abc", "abcd"]))
    assert _find(index, ["abc", "b"]) == [-1, 4] and len(index) == len(keys) - 1


def test_random_adds_and_removals_match_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through table growth, removals that shift probe runs back, and arena rewrites, lookups match a dict.

    Colliding hashes make every probe run long and compare key bytes at
    each step, and a low rewrite threshold makes the arena be written anew
    many times.
    """
    monkeypatch.setattr(keyindex, "COMPACT_ABOVE", 256)
    rng = np.random.default_rng(7)
    index = KeyIndex(capacity=8)
    held: dict[str, int] = {}
    free: list[int] = []
    universe = [f"k{i}" * int(rng.integers(1, 4)) for i in range(1_500)]
    rewrites = 0
    for step in range(200):
        absent = [k for k in rng.choice(universe, size=40, replace=False).tolist() if k not in held]
        slots = []
        for key in absent:
            slot = free.pop() if free else len(held) + len(free)
            held[key] = slot
            slots.append(slot)
        _add(index, absent, slots, _colliding)
        if step % 3 and held:
            going = rng.choice(sorted(held), size=min(len(held), 25), replace=False).tolist()
            before = index._dead
            index.remove(_colliding(going))
            rewrites += index._dead < before
            for key in going:
                free.append(held.pop(key))
        probe = rng.choice(universe, size=200).tolist()
        assert _find(index, probe, _colliding) == [held.get(k, -1) for k in probe]
    assert len(index) == len(held) and len(held) > 500
    assert _find(index, sorted(held), _colliding) == [held[k] for k in sorted(held)]
    assert rewrites >= 3 and len(index._table) >= 2 * len(held)
