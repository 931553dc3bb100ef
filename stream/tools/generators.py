"""Seeded event generators: synthetic sensor readings and market ticks, and a replay of river's SP500Stocks.

Each generator yields ``(record, label)`` pairs: the record as the input
schema has it (event time in epoch milliseconds), the label being the ground
truth a model learns (sensor: the sensor is in a fault state; market: the
symbol's next price move is up). The same seed gives the same values; event
times are synthetic (``start_ms`` plus ``1000 / rate`` ms per event) or, with
``start_ms=None``, the wall clock at the moment each event is generated.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["KEY_FIELDS", "KINDS", "SCHEMAS", "generate", "market_events", "sensor_events", "sp500_ticks"]

KINDS = ("sensor", "market", "sp500")
SCHEMAS = {"sensor": "sensor_reading", "market": "market_tick", "sp500": "market_tick"}
KEY_FIELDS = {"sensor": "sensor_id", "market": "symbol", "sp500": "symbol"}

Event = tuple[dict[str, Any], int]

# Sensor model: per-sensor baselines, gaussian noise, and a two-state fault
# process (about 1 event in 6 is in a fault, faults last 10 readings on
# average) that raises temperature and
# vibration. Noise standard deviations, in the fields' units:
SENSOR_NOISE = {"temperature": 1.0, "pressure": 50.0, "vibration": 0.3, "humidity": 1.5}
FAULT_START_P = 0.02
FAULT_END_P = 0.1
FAULT_TEMPERATURE = 2.5  # degrees added during a fault
FAULT_VIBRATION = 1.8  # factor on vibration during a fault
# After a concept change, a fault raises pressure and humidity by this many noise sd instead.
CONCEPT_FAULT_SD = 3.0
# Market model: AR(1) log returns, so the last move says a little about the next.
MARKET_AR = 0.3
MARKET_VOL = 0.001
# Drawn in blocks to amortise numpy's per-call cost.
_BLOCK = 4096


def sensor_events(
    count: int,
    keys: int,
    seed: int,
    rate: float = 1000.0,
    start_ms: int | None = 1_700_000_000_000,
    drift_at: int | None = None,
    drift_sigma: float = 1.0,
    concept_at: int | None = None,
) -> Iterator[Event]:
    """Sensor readings of ``keys`` sensors; from event ``drift_at`` on, every mean shifts by ``drift_sigma`` noise sd.

    From event ``concept_at`` on, the concept changes: a fault no longer
    shows in temperature and vibration but in pressure and humidity
    (``CONCEPT_FAULT_SD`` noise sd up), so a model trained before it misses
    faults, while the share of faults stays the same.
    """
    rng = np.random.default_rng(seed)
    base = {
        "temperature": rng.normal(60.0, 5.0, keys),
        "pressure": rng.normal(101_325.0, 500.0, keys),
        "vibration": 2.0 + np.abs(rng.normal(0.0, 0.5, keys)),
        "humidity": rng.normal(45.0, 5.0, keys),
    }
    names = [f"sensor-{k:05d}" for k in range(keys)]
    # Start in the fault process's stationary distribution, so that the stream
    # has no warm-up trend: the only drift is the one injected at drift_at.
    fault = rng.random(keys) < FAULT_START_P / (FAULT_START_P + FAULT_END_P)
    clock = _Clock(start_ms, rate)
    for i, (k, u, noise) in enumerate(_blocks(rng, count, keys, 4)):
        fault[k] = (u >= FAULT_END_P) if fault[k] else (u < FAULT_START_P)
        shift = drift_sigma if drift_at is not None and i >= drift_at else 0.0
        temperature = base["temperature"][k] + noise[0] * SENSOR_NOISE["temperature"]
        vibration = base["vibration"][k] + noise[2] * SENSOR_NOISE["vibration"]
        fault_shift = 0.0
        if fault[k]:
            if concept_at is not None and i >= concept_at:
                fault_shift = CONCEPT_FAULT_SD
            else:
                temperature += FAULT_TEMPERATURE
                vibration *= FAULT_VIBRATION
        record = {
            "sensor_id": names[k],
            "ts": clock.at(i),
            "temperature": float(temperature + shift * SENSOR_NOISE["temperature"]),
            "pressure": float(base["pressure"][k] + (noise[1] + shift + fault_shift) * SENSOR_NOISE["pressure"]),
            "vibration": float(vibration + shift * SENSOR_NOISE["vibration"]),
            "humidity": float(base["humidity"][k] + (noise[3] + shift + fault_shift) * SENSOR_NOISE["humidity"]),
        }
        yield record, int(fault[k])


def market_events(
    count: int,
    keys: int,
    seed: int,
    rate: float = 1000.0,
    start_ms: int | None = 1_700_000_000_000,
    drift_at: int | None = None,
    drift_sigma: float = 1.0,
) -> Iterator[Event]:
    """Ticks of ``keys`` symbols; from ``drift_at`` on, the mean log return shifts by ``drift_sigma`` volatilities."""
    rng = np.random.default_rng(seed)
    price = 20.0 + rng.gamma(2.0, 40.0, keys)
    names = [f"SYM{k:04d}" for k in range(keys)]
    # The next return of each symbol is drawn one tick ahead, so each tick's
    # label (next move up) is known when the tick is emitted.
    next_r = rng.normal(0.0, MARKET_VOL, keys)
    clock = _Clock(start_ms, rate)
    for i, (k, _u, noise) in enumerate(_blocks(rng, count, keys, 3)):
        r = next_r[k]
        price[k] *= math.exp(r)
        shift = drift_sigma * MARKET_VOL if drift_at is not None and i >= drift_at else 0.0
        next_r[k] = MARKET_AR * r + shift + noise[0] * MARKET_VOL
        half_spread = price[k] * 0.0002 * (1.0 + abs(noise[1]))
        record = {
            "symbol": names[k],
            "ts": clock.at(i),
            "price": float(price[k]),
            "size": float(round(math.exp(4.0 + noise[2]), 2)),
            "bid": float(price[k] - half_spread),
            "ask": float(price[k] + half_spread),
        }
        yield record, int(next_r[k] > 0.0)


def sp500_ticks(seed: int = 0, count: int | None = None, start_ms: int | None = None) -> Iterator[Event]:
    """river's bundled SP500Stocks daily returns (ten stocks, 2013-2018) replayed as daily ticks.

    Prices start at 100 and follow the real daily returns; sizes and spreads
    are seeded stand-ins (the data set has returns only). The label is the
    symbol's next-day return being positive. Event time: one day per row from
    2013-01-02 (or ``start_ms``), ten ticks per day.
    """
    from river.datasets import SP500Stocks

    rows = [x for x, _ in SP500Stocks()]
    symbols = sorted(rows[0])
    rng = np.random.default_rng(seed)
    price = dict.fromkeys(symbols, 100.0)
    day0 = int(dt.datetime(2013, 1, 2, tzinfo=dt.UTC).timestamp() * 1000) if start_ms is None else start_ms
    emitted = 0
    for day, x in enumerate(rows[:-1]):
        nxt = rows[day + 1]
        for sym in symbols:
            if count is not None and emitted >= count:
                return
            price[sym] *= 1.0 + x[sym] / 100.0
            half_spread = price[sym] * 0.0001 * (1.0 + abs(float(rng.normal())))
            record = {
                "symbol": sym,
                "ts": day0 + day * 86_400_000,
                "price": price[sym],
                "size": float(round(math.exp(6.0 + float(rng.normal())), 2)),
                "bid": price[sym] - half_spread,
                "ask": price[sym] + half_spread,
            }
            emitted += 1
            yield record, int(nxt[sym] > 0.0)


def generate(
    kind: str,
    count: int,
    keys: int,
    seed: int,
    rate: float = 1000.0,
    start_ms: int | None = 1_700_000_000_000,
    drift_at: int | None = None,
    drift_sigma: float = 1.0,
) -> Iterator[Event]:
    """Events of ``kind`` (one of KINDS)."""
    if kind == "sensor":
        return sensor_events(count, keys, seed, rate, start_ms, drift_at, drift_sigma)
    if kind == "market":
        return market_events(count, keys, seed, rate, start_ms, drift_at, drift_sigma)
    if kind == "sp500":
        return sp500_ticks(seed, count, start_ms)
    raise ValueError(f"unknown event kind {kind!r}; choose from {KINDS}")


class _Clock:
    """Event times: synthetic from ``start_ms`` at ``rate`` events/s, or the wall clock."""

    def __init__(self, start_ms: int | None, rate: float) -> None:
        self.start_ms = start_ms
        self.step_ms = 1000.0 / rate if rate > 0 else 1.0

    def at(self, i: int) -> int:
        if self.start_ms is None:
            return int(time.time() * 1000)
        return self.start_ms + int(i * self.step_ms)


def _blocks(rng: np.random.Generator, count: int, keys: int, n_noise: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """(key index, uniform draw, noise vector) per event, drawn a block at a time."""
    done = 0
    while done < count:
        n = min(_BLOCK, count - done)
        ks = rng.integers(0, keys, n)
        us = rng.random(n)
        noise = rng.normal(0.0, 1.0, (n, n_noise))
        for j in range(n):
            yield int(ks[j]), float(us[j]), noise[j]
        done += n
