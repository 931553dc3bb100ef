"""Keys that expire in event time: the rule, sweeps that change no feature, and restores that keep the clock."""

from __future__ import annotations

import numpy as np
import pytest

from features import FeatureSpec, FeatureStore
from tests.unit.test_windows import FIELDS, WINDOWS

SPEC = FeatureSpec(fields=FIELDS, windows=WINDOWS)
TTL_MS = 30_000
SHARDS = 3


def churn_events(seed: int, n: int = 6_000) -> list[tuple[str, int, int, tuple[float, float, float]]]:
    """(key, time, shard, values): keys that come and go, some back after long silences, some late events."""
    rng = np.random.default_rng(seed)
    now = 1_700_000_000_000
    events = []
    for i in range(n):
        now += int(rng.choice([0, 10, 200, 1_000]))
        # a few keys, each back after 0-60 s of silence now and then; a stream of new ones
        key = f"k{int(rng.integers(0, 40))}" if rng.random() < 0.7 else f"new{i}"
        ts = now - (int(rng.integers(0, 45_000)) if rng.random() < 0.05 else 0)  # late now and then
        shard = sum(map(ord, key)) % SHARDS
        events.append((key, ts, shard, (float(rng.normal()), 1e6 + float(rng.normal()), float(i % 5))))
    return events


def run(store: FeatureStore, events, batch: int = 101, sweep_every: int | None = None,
        held: list[np.ndarray] | None = None) -> np.ndarray:
    out = []
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        counts = np.zeros(len(chunk), dtype=np.int64)
        out.append(store.update_arrays([k for k, *_ in chunk], np.array([t for _, t, _, _ in chunk]),
                                       np.array([v for *_, v in chunk]), np.array([s for _, _, s, _ in chunk]),
                                       held=counts))
        if held is not None:
            held.append(counts)
        if sweep_every and (i // batch) % sweep_every == 0:
            for shard in range(SHARDS):
                store.expire(shard)
    return np.concatenate(out)


def renamed_by_rule(events) -> list[tuple[str, int, int, tuple[float, float, float]]]:
    """Each event's key renamed per life: a key starts a new life when its shard's clock (the newest event time
    on the shard so far, this event included) is more than the ttl past the key's newest event time."""
    clock: dict[int, int] = {}
    newest: dict[str, int] = {}
    life: dict[str, int] = {}
    out = []
    for key, ts, shard, values in events:
        clock[shard] = max(clock.get(shard, ts), ts)
        if key in newest and clock[shard] - newest[key] > TTL_MS:
            life[key] = life.get(key, 0) + 1
            del newest[key]
        newest[key] = max(newest.get(key, ts), ts)
        out.append((f"{key}#{life.get(key, 0)}", ts, shard, values))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_key_idle_past_the_ttl_starts_over_with_empty_windows(seed: int) -> None:
    events = churn_events(seed)
    renamed = renamed_by_rule(events)
    assert len({k for k, *_ in renamed}) > len({k for k, *_ in events}) + 20, "keys come back after the ttl"
    held: list[np.ndarray] = []
    expected_held: list[np.ndarray] = []
    got = run(FeatureStore(SPEC, TTL_MS), events, held=held)
    expected = run(FeatureStore(SPEC), renamed, held=expected_held)
    assert np.array_equal(got, expected)
    assert np.array_equal(np.concatenate(held), np.concatenate(expected_held))
    # the first event of each life holds one event
    seen: set[str] = set()
    firsts = [i for i, (k, *_) in enumerate(renamed) if not (k in seen or seen.add(k))]
    assert set(np.concatenate(held)[firsts].tolist()) == {1}


@pytest.mark.parametrize("sweep_every", [1, 7])
def test_sweeps_forget_idle_keys_and_change_no_feature(sweep_every: int) -> None:
    events = churn_events(4, n=8_000)
    never = run(FeatureStore(SPEC, TTL_MS), events)
    swept_store = FeatureStore(SPEC, TTL_MS)
    swept = run(swept_store, events, sweep_every=sweep_every)
    assert np.array_equal(swept, never)
    unswept = FeatureStore(SPEC, TTL_MS)
    run(unswept, events)
    gone = {s: unswept.expire(s) for s in range(SHARDS)}
    assert sum(map(len, gone.values())) > 100
    for shard, keys in gone.items():
        clock = unswept.clock(shard)
        assert clock is not None
        live = unswept.keys(shard)
        assert all(clock - t <= TTL_MS for t in unswept.newest(live).tolist()), "live keys are within the ttl"
        assert not set(keys) & set(live)
    assert len(unswept) < 200, "the thousands of keys that passed through are not all held"


def test_without_a_ttl_nothing_expires() -> None:
    events = churn_events(5, n=2_000)
    store = FeatureStore(SPEC)
    run(store, events, sweep_every=1)
    assert len(store) == len({k for k, *_ in events})


@pytest.mark.parametrize("cut", [900, 3_333])
def test_a_restored_shard_with_its_clock_expires_as_if_it_never_left(cut: int) -> None:
    events = churn_events(6, n=6_000)
    whole = run(FeatureStore(SPEC, TTL_MS), events)
    first = FeatureStore(SPEC, TTL_MS)
    run(first, events[:cut], sweep_every=3)
    restored = FeatureStore(SPEC, TTL_MS)
    for shard in range(SHARDS):
        keys = first.keys(shard)
        restored.load(list(zip(keys, first.export(keys))), shard)
        restored.set_clock(shard, first.clock(shard))
    assert np.array_equal(run(restored, events[cut:]), whole[cut:])


def test_the_clock_travels_with_the_state_so_a_late_event_after_a_restore_expires_alike() -> None:
    """Key a idles 100 s while b moves the clock; after the cut, a late event of a (t = 1 s) must start it over."""
    before = [("a", 0, 0, (1.0, 2.0, 3.0)), ("a", 10, 0, (5.0, 2.0, 3.0)), ("b", 100_000, 0, (1.0, 1.0, 1.0))]
    after = [("a", 1_000, 0, (9.0, 2.0, 3.0))]
    whole = run(FeatureStore(SPEC, TTL_MS), before + after)
    fresh = run(FeatureStore(SPEC, TTL_MS), after)
    assert np.array_equal(whole[-1], fresh[0]), "a started over"
    for keep_clock in (True, False):
        first = FeatureStore(SPEC, TTL_MS)
        run(first, before)
        restored = FeatureStore(SPEC, TTL_MS)
        restored.load(list(zip(first.keys(0), first.export(first.keys(0)))), 0)
        if keep_clock:
            restored.set_clock(0, first.clock(0))
        same = np.array_equal(run(restored, after)[0], whole[-1])
        assert same == keep_clock, "without its clock, the restored shard would keep a's windows"
