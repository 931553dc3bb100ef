"""The per-key bytes `streamscore state estimate` prints: the store's layout as allocated, and the floor."""

from __future__ import annotations

import numpy as np
import pytest

from features import FeatureSpec, FeatureStore, WindowSpec
from features.footprint import estimate
from tests.unit.test_windows import FIELDS, WINDOWS

SPEC = FeatureSpec(fields=FIELDS, windows=WINDOWS)


@pytest.mark.parametrize("rate", [5.0, 0.5])
def test_the_layout_estimate_is_what_a_store_of_full_windows_allocates(rate: float) -> None:
    keys = [f"k{i}" for i in range(1000)]
    store = FeatureStore(SPEC)
    spacing_ms = int(1000 / rate)
    rng = np.random.default_rng(1)
    for step in range(int(rate * 60) + 80):  # past the 60 s window and the 64-event one
        store.update_arrays(keys, np.full(len(keys), 1_700_000_000_000 + step * spacing_ms),
                            rng.normal(size=(len(keys), len(FIELDS))))
    footprint = estimate(SPEC, rate)
    assert [w.held for w in footprint.windows] == store.held("k7")
    assert store.key_bytes(keys) == len(keys) * footprint.layout_bytes
    assert store.nbytes >= store.key_bytes(keys)  # and spare rows


def test_the_floor_counts_held_events_and_the_summaries_the_aggregates_need() -> None:
    spec = FeatureSpec(fields=("a", "b"), windows=(WindowSpec("count", size=10, aggregates=("mean", "max")),
                                                  WindowSpec("time", seconds=4, aggregates=("last",))))
    footprint = estimate(spec, rate_per_s=2.0)
    # count: 10 events x (time + 2 values), 2 fields x (n, sum, hi), the newest time; time: 8 events, no summary
    assert [w.floor_bytes for w in footprint.windows] == [8 * (10 * 3 + 2 * 3 + 1), 8 * (8 * 3 + 1)]
    assert footprint.over_floor > 1


def test_state_estimate_prints_the_configured_spec(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main
    from stream.config import load_config
    from tests.conftest import ROOT

    config = ROOT / "examples" / "sensor.toml"
    assert main(["state", "estimate", "--config", str(config), "--keys", "2000", "--rate", "5"]) == 0
    footprint = estimate(load_config(config, {}).features, 5.0)
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("all"))
    assert total.split() == ["all", f"{footprint.floor_bytes:,}", f"{footprint.layout_bytes:,}"]
    assert f"2,000 keys at 5 events/s each: floor {footprint.floor_bytes * 2000 / 2**20:,.0f} MiB" in out
