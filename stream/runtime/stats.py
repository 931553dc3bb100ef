"""Counts and latencies of one run, for the end-of-run summary (Prometheus metrics come later)."""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunStats"]


@dataclass
class RunStats:
    """What a run consumed and produced, and how fast."""

    consumed: int = 0
    predictions: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    model_seconds: float = 0.0
    first_consumed: float | None = None  # wall-clock seconds
    last_acked: float | None = None
    # event time -> the service seeing its batch acknowledged, milliseconds, one per prediction
    latencies_ms: array = field(default_factory=lambda: array("d"))
    drift_alarms: int = 0
    # per challenger version: batches scored, skipped (busy), failed; events; agreement
    shadow: dict[str, dict[str, float | None]] = field(default_factory=dict)
    model_swaps: int = 0

    def record_acks(self, event_times_ms: np.ndarray, now: float) -> np.ndarray:
        """Count a batch's predictions acknowledged at ``now``; returns their latencies in ms."""
        latencies = now * 1000.0 - np.asarray(event_times_ms, dtype=np.float64)
        self.predictions += len(latencies)
        self.latencies_ms.frombytes(latencies.tobytes())
        self.last_acked = now
        return latencies

    def record_batch(self, consumed: int, model_seconds: float) -> None:
        """Count a batch of input events (a batch of labels only is not one)."""
        if consumed == 0:
            return
        if self.first_consumed is None:
            self.first_consumed = time.time()
        self.consumed += consumed
        self.batches += 1
        self.model_seconds += model_seconds

    def summary(self) -> dict[str, Any]:
        """A flat dict for the CLI's closing line and for tests."""
        elapsed = (
            (self.last_acked - self.first_consumed)
            if self.first_consumed is not None and self.last_acked is not None
            else 0.0
        )
        lat = np.frombuffer(self.latencies_ms, dtype=np.float64) if len(self.latencies_ms) else None
        return {
            "events_in": self.consumed,
            "predictions_out": self.predictions,
            "dead_letters": sum(self.dead_letters.values()),
            "dead_letters_by_reason": dict(self.dead_letters),
            "batches": self.batches,
            "mean_batch_size": round(self.consumed / self.batches, 1) if self.batches else 0.0,
            "elapsed_s": round(elapsed, 3),
            "throughput_eps": round(self.consumed / elapsed, 1) if elapsed > 0 else None,
            "model_seconds": round(self.model_seconds, 3),
            "drift_alarms": self.drift_alarms,
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat is not None else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat is not None else None,
            "model_swaps": self.model_swaps,
            **({"shadow": self.shadow} if self.shadow else {}),
        }
