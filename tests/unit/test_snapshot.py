"""Window state saved and loaded through its stored form continues with the very same bits."""

from __future__ import annotations

import numpy as np
import pytest

from features import FeatureSpec, FeatureStore, WindowSpec
from features.snapshot import StateFormatError
from tests.unit.test_windows import FIELDS, WINDOWS, make_events

SPEC = FeatureSpec(fields=FIELDS, windows=WINDOWS)


def run(store: FeatureStore, events, batch: int = 97, shard_of=None) -> np.ndarray:
    out = []
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        keys = [k for k, _, _ in chunk]
        times = np.array([t for _, t, _ in chunk], dtype=np.int64)
        values = np.array([v for _, _, v in chunk], dtype=np.float64)
        shards = None if shard_of is None else np.array([shard_of(k) for k in keys], dtype=np.int64)
        out.append(store.update_arrays(keys, times, values, shards))
    return np.concatenate(out)


@pytest.mark.parametrize("cut", [1, 500, 2_345, 7_001])
@pytest.mark.parametrize("in_order", [True, False])
def test_a_store_loaded_from_an_export_continues_bit_for_bit(cut: int, in_order: bool) -> None:
    events = make_events(seed=cut, n=8_000, in_order=in_order)
    whole = run(FeatureStore(SPEC), events)

    first = FeatureStore(SPEC)
    run(first, events[:cut])
    keys = first.keys(0)
    assert sorted(keys) == sorted({k for k, _, _ in events[:cut]})
    restored = FeatureStore(SPEC)
    restored.load(list(zip(keys, first.export(keys))), shard=0)
    rest = run(restored, events[cut:], batch=61)

    assert rest.shape == whole[cut:].shape
    assert np.array_equal(rest, whole[cut:])  # the same bits, not merely close


def test_dropping_a_shard_forgets_its_keys_only_and_reused_slots_start_empty() -> None:
    events = make_events(seed=3, n=4_000)
    shard_of = lambda key: int(key.split("-")[1]) % 2  # noqa: E731
    store = FeatureStore(SPEC)
    run(store, events, shard_of=shard_of)
    odd = store.keys(1)
    assert odd and all(shard_of(k) == 1 for k in odd)

    assert store.drop(1) == len(odd)
    assert store.keys(1) == [] and len(store) == len(store.keys(0))
    # A dropped key comes back empty (on a reused slot): its features are a fresh store's.
    again = [e for e in events[:500] if shard_of(e[0]) == 1]
    assert np.array_equal(run(store, again, shard_of=shard_of), run(FeatureStore(SPEC), again, shard_of=shard_of))


def test_dirty_lists_the_keys_updated_since_the_shard_was_cleaned() -> None:
    store = FeatureStore(SPEC)
    store.update_arrays(["a", "b"], np.array([1, 2]), np.ones((2, 3)), np.array([0, 1]))
    assert store.dirty(0) == ["a"] and store.dirty(1) == ["b"]
    store.clean(0)
    assert store.dirty(0) == [] and store.dirty(1) == ["b"]
    store.update_arrays(["a"], np.array([3]), np.ones((1, 3)), np.array([0]))
    assert store.dirty(0) == ["a"]


def test_a_loaded_key_is_not_dirty_until_an_event_changes_it() -> None:
    """Its stored version stays valid until then: a checkpoint after a restore writes only the keys that moved."""
    first = FeatureStore(SPEC)
    first.update_arrays(["a", "b"], np.array([1, 2]), np.ones((2, 3)), np.array([0, 0]))
    restored = FeatureStore(SPEC)
    restored.load(list(zip(["a", "b"], first.export(["a", "b"]))), shard=0)
    assert restored.dirty(0) == []
    restored.update_arrays(["b"], np.array([3]), np.ones((1, 3)), np.array([0]))
    assert restored.dirty(0) == ["b"]


def test_a_record_that_does_not_fit_the_spec_is_refused_and_nothing_changes() -> None:
    store = FeatureStore(SPEC)
    run(store, make_events(seed=5, n=1_000))
    record = store.export(["key-1"])[0]
    other = FeatureStore(FeatureSpec(fields=FIELDS, windows=(WindowSpec("count", size=4),)))
    target = FeatureStore(SPEC)
    for bad in (record[:-8], record[:-3], record + b"\0" * 8, b""):
        with pytest.raises(StateFormatError):
            target.load([("key-1", bad)], shard=0)
    with pytest.raises(StateFormatError):
        other.load([("key-1", record)], shard=0)
    assert len(target) == 0 and len(other) == 0
    assert store.fingerprint != other.fingerprint


def to_legacy(spec: FeatureSpec, record: bytes) -> bytes:
    """A record in the window layout of changelog formats 1-2: count, front length, newest, shift[F], times, values."""
    from features.kernel import N_SUMMARY

    words, out, at, n_fields = np.frombuffer(record, dtype=np.int64), [], 0, len(spec.fields)
    for _window in spec.windows:
        count = int(words[at])
        summaries = words[at + 3:at + 3 + n_fields * N_SUMMARY].reshape(n_fields, N_SUMMARY)
        held = words[at + 3 + n_fields * N_SUMMARY:at + 3 + n_fields * N_SUMMARY + count * (1 + n_fields)]
        out += [np.array([count, 0, words[at + 2]]), summaries[:, 0], held]
        at += 3 + n_fields * N_SUMMARY + count * (1 + n_fields)
    assert at == len(words)
    return np.concatenate(out).astype(np.int64).tobytes()


def test_a_record_of_the_layout_before_loads_with_its_summaries_recomputed() -> None:
    """Formats 1-2 stored no running summaries: a restore recomputes them, and the key goes on as it would have."""
    events = make_events(seed=4, n=4_000)
    first = FeatureStore(SPEC)
    run(first, events[:3_000])
    keys = first.keys(0)
    restored = FeatureStore(SPEC)
    restored.load([(k, to_legacy(SPEC, r)) for k, r in zip(keys, first.export(keys))], shard=0, legacy=True)
    assert all(restored.held(k) == first.held(k) for k in keys)
    np.testing.assert_allclose(run(restored, events[3_000:]), run(first, events[3_000:]), rtol=1e-9, atol=1e-9)
    with pytest.raises(StateFormatError):  # a record of this layout is not read as the one before
        FeatureStore(SPEC).load([(keys[0], first.export(keys[:1])[0])], shard=0, legacy=True)
