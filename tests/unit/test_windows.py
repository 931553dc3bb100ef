"""Every window feature against a plain numpy computation over the same window contents."""

from __future__ import annotations

import numpy as np
import pytest

from features import AGGREGATES, FeatureSpec, FeatureStore, WindowSpec, compute_features
from features.exceptions import FeatureSpecError, FeatureValueError

N_EVENTS = 10_000
N_KEYS = 50
RTOL = 1e-9
SUMS = ("mean", "sum", "ewma")

WINDOWS = (
    WindowSpec("count", size=1, aggregates=AGGREGATES),
    WindowSpec("count", size=7, aggregates=AGGREGATES, ewma_alpha=0.5),
    WindowSpec("count", size=64, aggregates=AGGREGATES),
    WindowSpec("time", seconds=5, aggregates=AGGREGATES, ewma_alpha=0.1),
    WindowSpec("time", seconds=60, aggregates=AGGREGATES),
)
# around zero; around 1e6 with unit spread (pressure in pascals); constant
# stretches (a stuck sensor) so that whole windows hold one value.
FIELDS = ("signal", "pressure", "stuck")


def make_events(seed: int, n: int = N_EVENTS, n_keys: int = N_KEYS, in_order: bool = True):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_keys, size=n)
    signal = rng.normal(0.0, 10.0, size=n)
    pressure = 1e6 + rng.normal(0.0, 1.0, size=n)
    stuck = np.round(rng.normal(0.0, 1.0, size=n), 1)
    stuck[rng.random(n) < 0.97] = np.nan  # filled below: 97% repeat the key's previous value
    clock = dict.fromkeys(range(n_keys), 1700000000000)
    last_stuck = dict.fromkeys(range(n_keys), 3.25)
    events = []
    for i in range(n):
        k = int(keys[i])
        # gaps of 0 ms (ties) up to 4 s, so the 5 s window holds 1 to dozens of events
        gap = int(rng.choice([0, 50, 500, 1500, 4000]))
        ts = clock[k] + gap
        if not in_order and rng.random() < 0.1:
            ts -= int(rng.integers(0, 20_000))  # a late event
        clock[k] = max(clock[k], ts)
        if not np.isnan(stuck[i]):
            last_stuck[k] = float(stuck[i])
        events.append((f"key-{k}", ts, (float(signal[i]), float(pressure[i]), last_stuck[k])))
    return events


def reference_contents(events, window: WindowSpec):
    """For each event, the values of each field in its window, by a direct reading of the definition."""
    per_key: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
    start: dict[str, int] = {}
    max_ts: dict[str, int] = {}
    out = []
    for key, ts, values in events:
        hist = per_key.setdefault(key, [])
        hist.append((ts, values))
        if window.kind == "count":
            lo = max(0, len(hist) - window.size)
        else:
            max_ts[key] = max(max_ts.get(key, ts), ts)
            lo = start.get(key, 0)
            while lo < len(hist) - 1 and hist[lo][0] <= max_ts[key] - window.seconds * 1000:
                lo += 1
            start[key] = lo
        contents = np.array([v for _, v in hist[lo:]])
        out.append(contents)
    return out


def reference_aggregate(name: str, c: np.ndarray, alpha: float) -> float:
    if name == "mean":
        return float(np.mean(c))
    if name == "std":
        # shifted by the first value, so that numpy's two-pass std is exactly
        # 0 on a constant window instead of rounding noise around its mean
        return float(np.std(c - c[0]))
    if name == "min":
        return float(np.min(c))
    if name == "max":
        return float(np.max(c))
    if name == "sum":
        return float(np.sum(c))
    if name == "count":
        return float(len(c))
    if name == "last":
        return float(c[-1])
    if name == "delta":
        return float(c[-1] - c[0])
    if name == "ewma":
        w = (1.0 - alpha) ** np.arange(len(c))[::-1]
        return float(np.sum(w * c) / np.sum(w))
    raise AssertionError(name)


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "late-events"])
def test_every_feature_matches_numpy_reference(in_order: bool) -> None:
    events = make_events(seed=7, in_order=in_order)
    spec = FeatureSpec(fields=FIELDS, windows=WINDOWS)
    got = compute_features(
        spec, ({"k": k, "t": t, **dict(zip(FIELDS, v))} for k, t, v in events), "k", "t"
    )
    assert got.shape == (N_EVENTS, spec.n_features)
    names = spec.feature_names
    checked = 0
    for window in WINDOWS:
        contents = reference_contents(events, window)
        for f_idx, field in enumerate(FIELDS):
            for agg in window.aggregates:
                col = names.index(f"{field}__{window.name}__{agg}")
                expected = np.array([reference_aggregate(agg, c[:, f_idx], window.ewma_alpha) for c in contents])
                scale = np.abs(expected)
                if agg in SUMS:
                    # A sum's relative error is measured against the sum of
                    # magnitudes: a mean of [0.1, -0.1] is 0 give or take 1e-17
                    # for numpy as for us, and a ratio of two such noises means nothing.
                    scale = np.array([reference_aggregate(agg, np.abs(c[:, f_idx]), window.ewma_alpha) for c in contents])
                error = np.abs(got[:, col] - expected)
                worst = int(np.argmax(error - RTOL * scale))
                assert np.all(error <= RTOL * scale), (names[col], worst, got[worst, col], expected[worst])
                checked += 1
    assert checked == len(FIELDS) * len(WINDOWS) * len(AGGREGATES)


def test_constant_windows_have_zero_std_never_nan_or_negative() -> None:
    events = make_events(seed=11)
    spec = FeatureSpec(fields=FIELDS, windows=WINDOWS)
    got = FeatureStore(spec).update_many(events)
    assert np.all(np.isfinite(got))
    std_cols = [i for i, n in enumerate(spec.feature_names) if n.endswith("__std")]
    assert np.all(got[:, std_cols] >= 0.0)
    for window in WINDOWS:
        col = spec.feature_names.index(f"stuck__{window.name}__std")
        contents = reference_contents(events, window)
        constant = np.array([np.all(c[:, 2] == c[0, 2]) for c in contents])
        assert constant.sum() > 200, "the data must hold many constant windows"
        assert np.all(got[constant, col] == 0.0)


def test_large_values_keep_precision_after_a_shift() -> None:
    """A window that slides from one level to another keeps full precision (no drift from removals)."""
    spec = FeatureSpec(fields=("p",), windows=(WindowSpec("count", size=10, aggregates=("mean", "std")),))
    store = FeatureStore(spec)
    rng = np.random.default_rng(3)
    values = np.concatenate([1e9 + rng.normal(0, 1, 5000), 1e6 + rng.normal(0, 1e-3, 5000), np.full(20, 5.0)])
    rows = np.array([store.update("k", i, [float(v)]) for i, v in enumerate(values)])
    for i in range(9, len(values)):
        c = values[i - 9 : i + 1]
        np.testing.assert_allclose(rows[i], [np.mean(c), np.std(c)], rtol=RTOL)
    assert rows[-1][1] == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batching_never_changes_a_feature(seed: int) -> None:
    events = make_events(seed=seed, n=3000, n_keys=60)
    spec = FeatureSpec(fields=FIELDS, windows=WINDOWS)
    store = FeatureStore(spec)
    one_by_one = np.array([store.update(k, t, v) for k, t, v in events])
    rng = np.random.default_rng(seed)
    store = FeatureStore(spec)
    parts, i = [], 0
    while i < len(events):
        size = int(rng.choice([1, 2, 17, 500, 5000]))
        parts.append(store.update_many(events[i : i + size]))
        i += size
    batched = np.concatenate(parts)
    offline = compute_features(
        spec, ({"k": k, "t": t, **dict(zip(FIELDS, v))} for k, t, v in events), "k", "t"
    )
    assert one_by_one.shape == batched.shape == offline.shape == (3000, spec.n_features)
    assert np.array_equal(one_by_one, batched)
    assert np.array_equal(one_by_one, offline)


def test_bad_value_is_rejected_without_touching_state() -> None:
    spec = FeatureSpec(fields=("a", "b"), windows=(WindowSpec("count", size=3, aggregates=("count", "sum")),))
    store = FeatureStore(spec)
    store.update("k", 0, [1.0, 2.0])
    for bad in (float("nan"), float("inf"), None, "3"):
        with pytest.raises(FeatureValueError, match="'b'"):
            store.update("k", 1, [5.0, bad])
    assert store.update("k", 2, [1.0, 2.0]) == [2.0, 2.0, 2.0, 4.0]


def test_window_state_is_bounded_by_the_spec() -> None:
    spec = FeatureSpec(fields=("a",), windows=(WindowSpec("count", size=5), WindowSpec("time", seconds=1)))
    store = FeatureStore(spec)
    for i in range(10_000):
        store.update("k", i * 100, [float(i)])
    assert store.held("k") == [5, 10]


@pytest.mark.parametrize(
    "table, message",
    [
        ({"fields": [], "windows": [{"kind": "count", "size": 3}]}, "fields is empty"),
        ({"fields": ["a"], "windows": []}, "windows is empty"),
        ({"fields": ["a"], "windows": [{"kind": "count", "size": 0}]}, "size >= 1"),
        ({"fields": ["a"], "windows": [{"kind": "time", "seconds": -1}]}, "seconds > 0"),
        ({"fields": ["a"], "windows": [{"kind": "sliding", "size": 3}]}, "'count' or 'time'"),
        ({"fields": ["a"], "windows": [{"kind": "count", "size": 3, "aggregates": ["median"]}]}, "median"),
        ({"fields": ["a"], "windows": [{"kind": "count", "size": 3}, {"kind": "count", "size": 3}]}, "share a name"),
    ],
)
def test_invalid_specs_say_what_is_wrong(table, message) -> None:
    with pytest.raises(FeatureSpecError, match=message):
        FeatureSpec.from_dict(table)


def test_feature_names_follow_field_window_aggregate_order() -> None:
    spec = FeatureSpec.from_dict(
        {"fields": ["t", "p"], "aggregates": ["mean", "max"], "windows": [{"kind": "count", "size": 4}, {"kind": "time", "seconds": 2.5}]}
    )
    assert spec.feature_names == (
        "t__n4__mean", "t__n4__max", "t__t2.5s__mean", "t__t2.5s__max",
        "p__n4__mean", "p__n4__max", "p__t2.5s__mean", "p__t2.5s__max",
    )
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_array_batches_equal_event_batches_and_reject_non_finite_values() -> None:
    events = make_events(seed=4, n=2000, n_keys=30)
    spec = FeatureSpec(fields=FIELDS, windows=WINDOWS)
    by_events = FeatureStore(spec).update_many(events)
    store = FeatureStore(spec)
    keys = [k for k, _, _ in events]
    times = np.array([t for _, t, _ in events])
    values = np.array([v for _, _, v in events])
    by_arrays = np.concatenate([store.update_arrays(keys[i:i + 300], times[i:i + 300], values[i:i + 300])
                                for i in range(0, 2000, 300)])
    assert np.array_equal(by_events, by_arrays)
    bad = values[:3].copy()
    bad[1, 2] = np.inf
    with pytest.raises(FeatureValueError, match="'stuck' of event 1"):
        store.update_arrays(keys[:3], times[:3], bad)
    # the rejected call changed nothing: the next event's features equal those of a store that never saw it
    clean = FeatureStore(spec)
    clean.update_arrays(keys, times, values)
    nxt = (keys[:3], times[:3] + 1000, values[:3] + 0.5)
    assert np.array_equal(store.update_arrays(*nxt), clean.update_arrays(*nxt))


@pytest.mark.parametrize("held_view", [False, True], ids=["remapped", "copied"])
def test_growing_the_ring_array_keeps_every_block(monkeypatch, held_view: bool) -> None:
    """The array grows by remapping its pages, or by a copy while an array over it is alive: the same features."""
    import features.arena as arena

    spec = FeatureSpec(fields=FIELDS, windows=(WindowSpec("time", seconds=60, aggregates=AGGREGATES),))
    events = make_events(seed=11, n=6_000, n_keys=20)

    def features(initial_words: int) -> tuple[np.ndarray, int]:
        monkeypatch.setattr(arena, "INITIAL_WORDS", initial_words)
        store = FeatureStore(spec)
        views, out = [], []
        for i in range(0, len(events), 50):
            if held_view:
                views.append(store._windows[0][0].arena.data)  # keeps the pages exported
            out.append(store.update_many(events[i:i + 50]))
        monkeypatch.undo()
        return np.concatenate(out), len(store._windows[0][0].arena.data)

    grown, words_grown = features(64)
    whole, words_whole = features(2**22)
    assert words_grown < words_whole  # the small array grew several times; the large one never
    assert np.array_equal(grown, whole)


def test_each_key_gets_a_ring_sized_for_it_and_freed_rings_are_reused() -> None:
    """A quiet key's ring stays small beside a busy key's, and a forgotten key's block serves the next key."""
    spec = FeatureSpec(fields=("x",), windows=(WindowSpec("time", seconds=10, aggregates=("mean", "min")),))
    store = FeatureStore(spec)
    for i in range(1_000):  # busy: 10 events a second; quiet: 1 event every 2 s
        keys = ["busy"] + (["quiet"] if i % 20 == 0 else [])
        store.update_arrays(keys, np.full(len(keys), i * 100), np.ones((len(keys), 1)) * i)
    state = store._windows[0][0]
    slot = dict(zip(("busy", "quiet"), store._held_slots(["busy", "quiet"]).tolist()))
    assert store.held("busy") == [100] and store.held("quiet") == [5]
    assert state.pos[slot["busy"], 5] == 112 and state.pos[slot["quiet"], 5] == 6  # the classes above held + 1
    used = state.arena.used
    store.drop(0)
    store.update_arrays(["again"], np.array([0]), np.ones((1, 1)))
    assert state.arena.used == used  # the new key took a freed block


@pytest.mark.parametrize("shape", ["rising", "falling", "sawtooth", "plateaus"])
def test_min_and_max_of_long_windows_follow_trends_exactly(shape: str) -> None:
    """Rings longer than 64 find a leaving extreme's successor through their stretches' summaries: same values."""
    n = 3_000
    i = np.arange(n, dtype=np.float64)
    values = {"rising": i, "falling": -i, "sawtooth": (i % 257) - (i % 3) * 0.5,
              "plateaus": np.repeat(np.random.default_rng(2).normal(size=n // 50), 50)}[shape]
    windows = (WindowSpec("count", size=300, aggregates=("min", "max")),
               WindowSpec("time", seconds=45, aggregates=("min", "max")))
    spec = FeatureSpec(fields=("x",), windows=windows)
    store = FeatureStore(spec)
    times = 1_700_000_000_000 + (i * 100).astype(np.int64)
    got = np.concatenate([store.update_arrays(["k"] * len(chunk), times[chunk], values[chunk, None])
                          for chunk in np.array_split(np.arange(n), 37)])
    assert store._windows[1][0].pos[0, 6] > 0  # the time window's ring keeps stretches
    for row in range(n):
        for w, lo in ((0, max(0, row - 299)), (1, max(0, row - 449))):
            assert got[row, 2 * w] == values[lo:row + 1].min(), (row, w)
            assert got[row, 2 * w + 1] == values[lo:row + 1].max(), (row, w)


def test_blocks_left_behind_by_growing_keys_are_swept_away_without_changing_a_feature(monkeypatch) -> None:
    """Keys growing together leave their smaller blocks free; sweeps over many batches reclaim them, bytes intact.

    Keys also expire and a shard is dropped while sweeps run, so blocks are
    given out and handed back on both sides of the sweep's cursor.
    """
    import features.arena as arena

    spec = FeatureSpec(fields=("x", "y"), windows=(WindowSpec("time", seconds=10, aggregates=AGGREGATES),))
    keys = [f"k{i}" for i in range(2_000)]
    rng = np.random.default_rng(5)
    rounds = [(np.full(len(keys), 1_700_000_000_000 + step * 200), rng.normal(size=(len(keys), 2)))
              for step in range(60)]
    shards = np.arange(len(keys)) % 3
    late = np.arange(len(keys)) < 1_500  # from round 30 on, the others fall idle and expire

    def fill(compact_words: int) -> tuple[np.ndarray, FeatureStore, int]:
        monkeypatch.setattr(arena, "COMPACT_WORDS", compact_words)
        monkeypatch.setattr(arena, "SWEEP_WORDS", 200)  # a sweep takes many batches
        monkeypatch.setattr(arena, "SWEEP_SPAN", 4_096)  # and many lists
        store = FeatureStore(spec, key_ttl_ms=3_000)
        state = store._windows[0][0]
        out, sweeps = [], 0
        for step, (times, values) in enumerate(rounds):
            chosen = late if step >= 30 else np.ones(len(keys), dtype=bool)
            for part in np.array_split(np.flatnonzero(chosen), 8):
                sweeping = state.arena.sweeping
                out.append(store.update_arrays([keys[i] for i in part], times[part], values[part], shards[part]))
                sweeps += sweeping and not state.arena.sweeping
                for shard in range(3):
                    store.expire(shard)
            if step == 45:
                store.drop(2)
        monkeypatch.undo()
        return np.concatenate(out), store, sweeps

    swept, store, sweeps = fill(1_024)
    plain, plain_store, _ = fill(2**62)
    assert sweeps >= 5
    assert np.array_equal(swept, plain)
    held = sorted(k for k in plain_store._keys if k is not None)
    assert sorted(k for k in store._keys if k is not None) == held and len(held) == 1_500  # the idle 500 expired (shard 2 came back)
    assert store.export(held) == plain_store.export(held)
    state, plain_state = store._windows[0][0], plain_store._windows[0][0]
    live = state.arena.live_bytes // 8
    assert live == plain_state.arena.live_bytes // 8  # the same blocks in use, whatever the sweeps moved
    assert plain_state.arena.free_words > 3 * live  # growing through the classes left this much behind
    state.compact_step(2**62)  # whatever sweep is still running ends
    assert not state.arena.sweeping
    assert state.arena.used - state.arena.free_words == live
    assert state.arena.used < 1.5 * live
