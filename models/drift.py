"""Online drift detection with river detectors on declared signals, one detector per signal and input partition.

A signal is a stream of numbers the service sees for every event: a raw
input field, a feature, the model's score, or (once labels arrive) the
model's error. Values are standardised with the training reference
statistics of the model's manifest when it has them, so thresholds read in
standard deviations whatever the field's unit.

Scope: each input partition has its own detector per signal. Partitions are
ordered streams and are what a process owns, so an alarm names the partition
and offset where it fired, and memory is signals x partitions whatever the
number of keys.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift as river_drift
from river.drift import binary as river_binary

from models.exceptions import ModelError

__all__ = [
    "DETECTORS",
    "SIGNAL_SOURCES",
    "DriftConfigError",
    "DriftEvent",
    "DriftMonitor",
    "SignalSpec",
    "make_detector",
]

logger = logging.getLogger(__name__)

SIGNAL_SOURCES = ("input", "feature", "score", "error")

# Detector name -> (factory, defaults). Every parameter that changes results
# is written out here, so config and docs name them rather than inheriting
# river's hidden defaults. ADWIN's clock: the window is checked for a cut
# every `clock` updates, which sets the granularity of detection delays.
DETECTORS: dict[str, tuple[Any, dict[str, Any]]] = {
    "adwin": (river_drift.ADWIN, {"delta": 0.002, "clock": 32, "max_buckets": 5,
                                  "min_window_length": 5, "grace_period": 10}),
    "page_hinkley": (river_drift.PageHinkley, {"min_instances": 30, "delta": 0.1, "threshold": 50.0,
                                               "alpha": 0.9999, "mode": "both"}),
    "kswin": (river_drift.KSWIN, {"alpha": 0.001, "window_size": 200, "stat_size": 50, "seed": 1}),
    "ddm": (river_binary.DDM, {"warm_start": 30, "warning_threshold": 2.0, "drift_threshold": 3.0}),
}
# Detectors for a 0/1 error stream only.
BINARY_DETECTORS = ("ddm",)


class DriftConfigError(ModelError):
    """A drift signal or detector is declared wrongly."""


@dataclass(frozen=True)
class SignalSpec:
    """One monitored signal and its detector."""

    source: str
    name: str = ""
    detector: str = "adwin"
    params: Mapping[str, Any] = field(default_factory=dict)
    # Feed every Nth value only: for costly detectors such as KSWIN.
    sample_every: int = 1

    def __post_init__(self) -> None:
        if self.source not in SIGNAL_SOURCES:
            raise DriftConfigError(f"drift signal source must be one of {SIGNAL_SOURCES}, got {self.source!r}")
        if self.source in ("input", "feature") and not self.name:
            raise DriftConfigError(f"a drift signal on {self.source} needs the name of the {self.source}")
        if self.detector not in DETECTORS:
            raise DriftConfigError(f"unknown drift detector {self.detector!r}; choose from {sorted(DETECTORS)}")
        if self.detector in BINARY_DETECTORS and self.source != "error":
            raise DriftConfigError(f"{self.detector} watches a 0/1 error stream: use it with source = 'error'")
        unknown = set(self.params) - set(DETECTORS[self.detector][1])
        if unknown:
            raise DriftConfigError(
                f"unknown parameter {sorted(unknown)[0]!r} for {self.detector}; it takes {sorted(DETECTORS[self.detector][1])}"
            )
        if self.sample_every < 1:
            raise DriftConfigError(f"sample_every must be >= 1, got {self.sample_every}")

    @property
    def label(self) -> str:
        """The signal's name in events and metrics: ``score``, ``error``, ``input:temperature``."""
        return f"{self.source}:{self.name}" if self.name else self.source

    @property
    def resolved_params(self) -> dict[str, Any]:
        return {**DETECTORS[self.detector][1], **self.params}


@dataclass(frozen=True)
class DriftEvent:
    """One alarm: where in the stream it fired and, where the detector exposes it, the window statistics."""

    signal: str
    detector: str
    model_name: str
    model_version: str
    topic: str
    partition: int
    offset: int
    event_time: int
    detected_at: int
    observations: int  # values this detector saw since its previous alarm
    mean_before: float | None = None
    mean_after: float | None = None
    width_before: int | None = None
    width_after: int | None = None

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_detector(spec: SignalSpec) -> Any:
    """A fresh river detector for ``spec``."""
    factory, _ = DETECTORS[spec.detector]
    try:
        return factory(**spec.resolved_params)
    except (TypeError, ValueError) as exc:
        raise DriftConfigError(f"bad parameters for {spec.detector}: {exc}") from exc


class _Track:
    """A detector on one (signal, partition), and the values it saw since its previous alarm."""

    __slots__ = ("detector", "exposes_window", "seen", "since_alarm", "sum_since_alarm")

    def __init__(self, spec: SignalSpec) -> None:
        self.detector = make_detector(spec)
        self.seen = 0
        self.since_alarm = 0
        self.sum_since_alarm = 0.0
        self.exposes_window = spec.detector == "adwin"


class DriftMonitor:
    """Feeds each declared signal of each batch to its per-partition detector; returns the alarms."""

    def __init__(
        self,
        *,
        signals: Sequence[SignalSpec],
        model_name: str,
        model_version: str,
        input_fields: Sequence[str],
        feature_names: Sequence[str],
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        self.signals = tuple(signals)
        self.model_name = model_name
        self.model_version = model_version
        self._tracks: dict[tuple[int, str, int], _Track] = {}
        self._columns: list[tuple[int, SignalSpec, str, int]] = []  # (signal index, spec, where, column)
        for i, spec in enumerate(self.signals):
            if spec.source == "input":
                if spec.name not in input_fields:
                    raise DriftConfigError(f"drift signal input:{spec.name} is not a feature field ({list(input_fields)})")
                self._columns.append((i, spec, "input", list(input_fields).index(spec.name)))
            elif spec.source == "feature":
                if spec.name not in feature_names:
                    raise DriftConfigError(f"drift signal feature:{spec.name} is not a feature of the model")
                self._columns.append((i, spec, "feature", list(feature_names).index(spec.name)))
            elif spec.source == "score":
                self._columns.append((i, spec, "score", 0))
        self._error_signals = [(i, s) for i, s in enumerate(self.signals) if s.source == "error"]
        self._scale = {spec.label: _scale_of(spec, reference or {}) for spec in self.signals}

    @property
    def watches_errors(self) -> bool:
        return bool(self._error_signals)

    def export(self, partition: int) -> bytes:
        """The detectors of ``partition`` as bytes (a pickle: load it only from a topic you trust)."""
        tracks = {(label, _identity(self.signals[i])): track
                  for (i, label, p), track in self._tracks.items() if p == partition}
        return pickle.dumps(tracks, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, partition: int, data: bytes) -> int:
        """Replace the detectors of ``partition`` with exported ones; returns how many were taken.

        A detector exported for a signal that is no longer declared, or now
        declared with another detector or parameters, is left out: its
        signal starts afresh.
        """
        self.drop(partition)
        if not data:
            return 0
        tracks = pickle.loads(data)  # noqa: S301 - the state changelog is written by this service
        taken = 0
        for i, spec in enumerate(self.signals):
            track = tracks.get((spec.label, _identity(spec)))
            if track is not None:
                self._tracks[(i, spec.label, partition)] = track
                taken += 1
        return taken

    def drop(self, partition: int) -> None:
        """Forget the detectors of ``partition`` (it moved to another process)."""
        for key in [k for k in self._tracks if k[2] == partition]:
            del self._tracks[key]

    def update(
        self,
        topic: str,
        partitions: np.ndarray,
        offsets: np.ndarray,
        event_times: np.ndarray,
        inputs: np.ndarray,
        features: np.ndarray,
        scores: np.ndarray,
    ) -> list[DriftEvent]:
        """Feed one scored batch, rows in arrival order; return the alarms it raised."""
        if not self._columns or len(scores) == 0:
            return []
        events: list[DriftEvent] = []
        groups = _rows_by_partition(partitions)
        for i, spec, where, col in self._columns:
            values = inputs[:, col] if where == "input" else features[:, col] if where == "feature" else scores
            mean, std = self._scale[spec.label]
            z = (values - mean) / std
            for partition, rows in groups:
                events.extend(self._feed(i, spec, topic, partition, rows, z[rows], offsets, event_times))
        return events

    def update_errors(self, topic: str, partition: int, offset: int, event_time: int, error: float) -> list[DriftEvent]:
        """Feed one model error (0/1 for classifiers, absolute error for regressors) joined from a label."""
        events: list[DriftEvent] = []
        rows = np.array([0])
        for i, spec in self._error_signals:
            value = np.array([1.0 if error else 0.0]) if spec.detector in BINARY_DETECTORS else np.array([float(error)])
            events.extend(self._feed(i, spec, topic, partition, rows, value,
                                     np.array([offset]), np.array([event_time])))
        return events

    def _feed(
        self, index: int, spec: SignalSpec, topic: str, partition: int, rows: np.ndarray, values: np.ndarray,
        offsets: np.ndarray, event_times: np.ndarray,
    ) -> list[DriftEvent]:
        key = (index, spec.label, partition)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(spec)
        every = spec.sample_every
        if every > 1:  # keep the values whose running count is a multiple of `every`
            first = (-track.seen - 1) % every
            track.seen += len(values)
            rows, values = rows[first::every], values[first::every]
        else:
            track.seen += len(values)
        det = track.detector
        update = det.update
        events: list[DriftEvent] = []
        start = 0  # values[start:] are not yet counted in track.since_alarm
        for j, x in enumerate(values.tolist()):
            update(x)
            if not det.drift_detected:
                continue
            # The mean before the alarm is over the values since the previous one:
            # for ADWIN exactly its window before the cut.
            n_before = track.since_alarm + j + 1 - start
            mean_before = (track.sum_since_alarm + float(values[start:j + 1].sum())) / n_before
            row = int(rows[j])
            window = track.exposes_window
            event = DriftEvent(
                signal=spec.label, detector=spec.detector, model_name=self.model_name,
                model_version=self.model_version, topic=topic, partition=partition,
                offset=int(offsets[row]), event_time=int(event_times[row]),
                detected_at=int(time.time() * 1000), observations=n_before,
                mean_before=mean_before,
                mean_after=float(det.estimation) if window else None,
                width_before=n_before if window else None,
                width_after=int(det.width) if window else None,
            )
            track.since_alarm, track.sum_since_alarm, start = 0, 0.0, j + 1
            logger.warning(
                "drift on %s (%s) in %s[%d] at offset %d, event time %d",
                event.signal, event.detector, topic, partition, event.offset, event.event_time,
            )
            events.append(event)
        track.since_alarm += len(values) - start
        track.sum_since_alarm += float(values[start:].sum())
        return events


def _identity(spec: SignalSpec) -> str:
    """What a detector's state depends on: a saved detector is reused only for the same one."""
    return repr((spec.detector, sorted(spec.resolved_params.items()), spec.sample_every))


def _rows_by_partition(partitions: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Row indices per partition, each in arrival order."""
    if len(partitions) and np.all(partitions == partitions[0]):
        return [(int(partitions[0]), np.arange(len(partitions)))]
    order = np.argsort(partitions, kind="stable")
    sorted_parts = partitions[order]
    cuts = np.flatnonzero(np.diff(sorted_parts)) + 1
    return [(int(chunk_parts[0]), chunk) for chunk, chunk_parts in
            zip(np.split(order, cuts), np.split(sorted_parts, cuts))]


def _scale_of(spec: SignalSpec, reference: Mapping[str, Any]) -> tuple[float, float]:
    """(mean, std) to standardise a signal by, from the manifest's reference statistics."""
    if spec.source == "input":
        stats = reference.get("inputs", {}).get(spec.name)
    elif spec.source == "feature":
        stats = reference.get("features", {}).get(spec.name)
    elif spec.source == "score":
        stats = reference.get("score")
    else:  # errors are 0/1 or absolute errors: watched as they are
        stats = None
    if not stats:
        return 0.0, 1.0
    std = float(stats.get("std", 1.0)) or 1.0
    return float(stats.get("mean", 0.0)), std
