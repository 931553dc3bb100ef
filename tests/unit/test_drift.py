"""Drift detection: every detector against seeded shifts with stated bounds, and the monitor's bookkeeping.

The bounds are the ones the README states; bench/drift_report.py measures
the same quantities over more events and writes bench/results/drift.json.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.drift import DETECTORS, DriftConfigError, DriftMonitor, SignalSpec, make_detector

CHANGE_AT = 3000
# (detector, on a 0/1 error stream) -> (seeds, worst delay allowed, alarms allowed before the change
# over all seeds, false alarms allowed in one stationary run, its length)
BOUNDS = {
    ("adwin", False): (20, 100, 0, 0, 100_000),
    ("page_hinkley", False): (20, 100, 5, 20, 100_000),
    ("kswin", False): (8, 1100, 15, 10, 10_000),  # a KS test per update: ~0.3 ms, so fewer events
    ("adwin", True): (20, 250, 0, 0, 100_000),
    ("ddm", True): (20, 600, 40, 2, 100_000),  # false alarms while its estimate settles: not the default
}
CASES = sorted(BOUNDS, key=str)
IDS = [f"{name}{'-errors' if binary else ''}" for name, binary in CASES]


def first_alarms(name: str, values: np.ndarray, binary: bool = False, stop_after: int | None = None) -> list[int]:
    """Alarm indices; with ``stop_after``, up to the first alarm at or past that index."""
    det = make_detector(SignalSpec("error" if binary else "score", detector=name))
    fired = []
    for i, x in enumerate(values.tolist()):
        det.update(x)
        if det.drift_detected:
            fired.append(i)
            if stop_after is not None and i >= stop_after:
                break
    return fired


def stream(seed: int, binary: bool, n_after: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if binary:  # a concept change seen through labels: error rate 0.1 -> 0.3
        return np.concatenate([rng.random(CHANGE_AT) < 0.1, rng.random(n_after) < 0.3]).astype(float)
    return np.concatenate([rng.normal(0, 1, CHANGE_AT), rng.normal(1, 1, n_after)])  # mean +1 sd


def test_every_detector_is_checked() -> None:
    assert {name for name, _ in BOUNDS} == set(DETECTORS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detector_finds_the_shift_within_its_stated_delay(case: tuple[str, bool]) -> None:
    name, binary = case
    seeds, worst, early_allowed, _, _ = BOUNDS[case]
    delays, early = [], 0
    for seed in range(seeds):
        fired = first_alarms(name, stream(seed, binary), binary, stop_after=CHANGE_AT)
        early += sum(1 for i in fired if i < CHANGE_AT)
        after = [i - CHANGE_AT for i in fired if i >= CHANGE_AT]
        assert after, f"{name} missed the shift with seed {seed}"
        delays.append(after[0])
    assert max(delays) <= worst, (name, delays)
    assert early <= early_allowed, (name, early)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detector_false_alarms_on_a_stationary_stream_stay_within_bound(case: tuple[str, bool]) -> None:
    name, binary = case
    _, _, _, allowed, n = BOUNDS[case]
    rng = np.random.default_rng(10_020)
    values = (rng.random(n) < 0.1).astype(float) if binary else rng.normal(0, 1, n)
    assert len(first_alarms(name, values, binary)) <= allowed


def monitor(signals, reference=None) -> DriftMonitor:
    return DriftMonitor(signals=signals, model_name="m", model_version="7", input_fields=["temperature", "pressure"], feature_names=["temperature__n4__mean"], reference=reference)


def test_alarms_are_per_partition_and_name_the_offset() -> None:
    rng = np.random.default_rng(1)
    n = 8000
    partitions = np.tile([0, 1], n // 2)
    offsets = np.repeat(np.arange(n // 2), 2)
    temperature = rng.normal(60, 1, n)
    temperature[(partitions == 1) & (offsets >= 2000)] += 1.0  # only partition 1 drifts, from its offset 2000
    inputs = np.column_stack([temperature, rng.normal(1e5, 50, n)])
    mon = monitor([SignalSpec("input", "temperature")], {"inputs": {"temperature": {"mean": 60.0, "std": 1.0}}})
    events = []
    for start in range(0, n, 500):  # batches, as the service feeds them
        rows = slice(start, start + 500)
        events += mon.update("in", partitions[rows], offsets[rows], offsets[rows] * 10, inputs[rows],
                             np.zeros((500, 1)), np.zeros(500))
    assert events and {e.partition for e in events} == {1}
    first = events[0]
    assert 2000 <= first.offset <= 2100 and first.event_time == first.offset * 10
    assert first.signal == "input:temperature" and first.detector == "adwin"
    assert first.model_name == "m" and first.model_version == "7"
    assert first.mean_before is not None and first.mean_after is not None and first.mean_after > first.mean_before
    assert first.width_after < first.width_before


def test_batching_does_not_change_alarms() -> None:
    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1.5, 1, 1000)])
    parts, offs = np.zeros(4000, dtype=int), np.arange(4000)
    empty = np.zeros((4000, 2))

    def run(batch: int) -> list[int]:
        mon = monitor([SignalSpec("score")])
        out = []
        for s in range(0, 4000, batch):
            out += [e.offset for e in mon.update("in", parts[s:s + batch], offs[s:s + batch], offs[s:s + batch],
                                                empty[s:s + batch], empty[s:s + batch, :1], scores[s:s + batch])]
        return out

    assert run(1) == run(37) == run(4000) != []


def test_error_signal_feeds_its_detector() -> None:
    mon = monitor([SignalSpec("error", detector="adwin")])
    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.random(2000) < 0.05, rng.random(2000) < 0.5])
    fired = [o for o, e in enumerate(errors) if mon.update_errors("in", 0, o, o, float(e))]
    assert fired and fired[0] >= 2000


def test_memory_is_signals_times_partitions_whatever_the_keys() -> None:
    mon = monitor([SignalSpec("score"), SignalSpec("input", "pressure", detector="page_hinkley")])
    n = 20_000
    rng = np.random.default_rng(4)
    mon.update("in", rng.integers(0, 6, n), np.arange(n), np.arange(n), rng.normal(size=(n, 2)),
               rng.normal(size=(n, 1)), rng.normal(size=n))
    assert len(mon._tracks) == 2 * 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "weather"}, "source must be one of"),
        ({"source": "input"}, "needs the name"),
        ({"source": "score", "detector": "cusum"}, "unknown drift detector"),
        ({"source": "score", "detector": "ddm"}, "0/1 error stream"),
        ({"source": "score", "params": {"delta": 0.01, "clok": 3}}, "unknown parameter 'clok'"),
    ],
)
def test_bad_signal_specs_say_why(kwargs: dict, message: str) -> None:
    with pytest.raises(DriftConfigError, match=message):
        SignalSpec(**kwargs)


def test_standardisation_uses_the_reference() -> None:
    mon = monitor([SignalSpec("input", "pressure", detector="page_hinkley")],
                  {"inputs": {"pressure": {"mean": 1e5, "std": 50.0}}})
    rng = np.random.default_rng(5)
    pressure = rng.normal(1e5, 50, 20_000)
    inputs = np.column_stack([np.zeros(20_000), pressure])
    z = np.arange(20_000)
    events = mon.update("in", np.zeros(20_000, dtype=int), z, z, inputs, np.zeros((20_000, 1)), np.zeros(20_000))
    assert len(events) <= 4  # unstandardised, Page-Hinkley's threshold of 50 would be a fraction of one sd


def test_window_statistics_are_adwins_own() -> None:
    rng = np.random.default_rng(6)
    scores = np.concatenate([rng.normal(0, 1, 2000), rng.normal(2, 1, 1000), rng.normal(-1, 1, 1000)])
    reference = make_detector(SignalSpec("score"))
    expected = []
    for x in scores.tolist():
        before, width = reference.estimation, reference.width
        reference.update(x)
        if reference.drift_detected:  # the window just before the cut: the old one plus x
            expected.append(((before * width + x) / (width + 1), width + 1, reference.estimation, reference.width))
    mon = monitor([SignalSpec("score")])
    n = len(scores)
    events = []
    for s in range(0, n, 300):
        rows = slice(s, s + 300)
        k = len(scores[rows])
        events += mon.update("in", np.zeros(k, dtype=int), np.arange(n)[rows], np.arange(n)[rows],
                             np.zeros((k, 2)), np.zeros((k, 1)), scores[rows])
    assert len(events) == len(expected) >= 2
    for e, (before, width, after, width_after) in zip(events, expected):
        assert e.mean_before == pytest.approx(before, rel=1e-9, abs=1e-12)
        assert (e.width_before, e.mean_after, e.width_after) == (width, after, width_after)
