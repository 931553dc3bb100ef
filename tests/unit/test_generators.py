"""The seeded generators: reproducible, labelled, drifting where told."""

from __future__ import annotations

import numpy as np

from stream.tools.generators import generate, market_events, sensor_events, sp500_ticks


def test_same_seed_same_events() -> None:
    assert list(sensor_events(500, 10, seed=3)) == list(sensor_events(500, 10, seed=3))
    assert list(market_events(500, 10, seed=3)) != list(market_events(500, 10, seed=4))


def test_sensor_faults_raise_temperature_and_occur_about_one_in_six() -> None:
    pairs = list(sensor_events(40_000, 50, seed=1))
    labels = np.array([y for _, y in pairs])
    assert 0.10 < labels.mean() < 0.25
    temps = np.array([r["temperature"] for r, _ in pairs])
    assert temps[labels == 1].mean() - temps[labels == 0].mean() > 1.5


def test_drift_shifts_the_mean_from_the_given_index() -> None:
    base = [r["temperature"] for r, _ in sensor_events(4000, 5, seed=8)]
    drifted = [r["temperature"] for r, _ in sensor_events(4000, 5, seed=8, drift_at=2000, drift_sigma=2.0)]
    assert drifted[:2000] == base[:2000]
    np.testing.assert_allclose(np.subtract(drifted[2000:], base[2000:]), 2.0)


def test_synthetic_event_time_follows_the_rate() -> None:
    times = [r["ts"] for r, _ in generate("market", 101, 3, seed=0, rate=50.0, start_ms=1000)]
    assert times[0] == 1000 and times[-1] == 1000 + 2000


def test_sp500_replay_uses_the_bundled_returns() -> None:
    ticks = list(sp500_ticks(count=25))
    assert [r["symbol"] for r, _ in ticks[:10]] == sorted({r["symbol"] for r, _ in ticks[:10]})
    assert len(ticks) == 25
    assert ticks[10][0]["ts"] - ticks[0][0]["ts"] == 86_400_000
    aapl = [r for r, _ in sp500_ticks() if r["symbol"] == "AAPL"]
    assert len(aapl) == 1256
    assert aapl[0]["price"] == 100.0 * (1 + 1.042235 / 100)
    assert all(r["bid"] < r["price"] < r["ask"] for r in aapl)
