"""Delayed labels: joined with recent predictions held in a bounded cache, feeding online metrics.

A prediction waits in the cache until its label arrives, or until the cache
is full or the prediction is older than the age limit; then it leaves,
counted as unlabelled. A label whose prediction is not in the cache (it left
already, or never was) is counted as unmatched. Neither ever blocks scoring.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from river import metrics as river_metrics

__all__ = ["CachedPrediction", "LabelJoin", "LabelJoiner", "PairedComparison", "as_label"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedPrediction:
    """What the joiner keeps of a prediction until its label comes."""

    score: float
    label: str | None
    positive: float | None  # P(positive class) for binary classifiers
    model_version: str
    topic: str
    partition: int
    offset: int
    event_time: int
    cached_at: float
    # a challenger's prediction: the champion's label and score for the same event, for paired comparison
    champion: tuple[str | None, float] | None = None


@dataclass(frozen=True)
class LabelJoin:
    """A label matched with its prediction, and the model's error on it."""

    prediction: CachedPrediction
    truth: Any
    error: float  # 0/1 for classifiers, absolute error for regressors


class LabelJoiner:
    """A bounded cache of predictions by event id, and online metrics per model version."""

    def __init__(self, task: str, classes: Sequence[str], max_size: int = 100_000, max_age_s: float = 3600.0) -> None:
        self.task = task
        self.classes = tuple(classes)
        self.max_size = max_size
        self.max_age_s = max_age_s
        self._cache: OrderedDict[str, CachedPrediction] = OrderedDict()
        self.joined = 0
        self.unmatched = 0
        self.unlabelled = 0  # predictions that left the cache without a label
        self._metrics: dict[str, dict[str, Any]] = {}
        # challenger predictions carry the champion's: both judged on the same labels
        self.paired = PairedComparison(task)

    def __len__(self) -> int:
        return len(self._cache)

    def add(self, event_id: str, prediction: CachedPrediction) -> None:
        """Hold a prediction until its label arrives; evict what is over the limits."""
        self._cache[event_id] = prediction
        self._cache.move_to_end(event_id)
        self.expire(prediction.cached_at)

    def expire(self, now: float) -> None:
        """Drop predictions over the size limit or older than the age limit."""
        cache = self._cache
        horizon = now - self.max_age_s
        while cache:
            first = next(iter(cache.values()))
            if len(cache) <= self.max_size and first.cached_at >= horizon:
                break
            cache.popitem(last=False)
            self.unlabelled += 1

    def join(self, event_id: str, truth: Any) -> LabelJoin | None:
        """Match a label; None (and counted) when its prediction is not held."""
        prediction = self._cache.pop(event_id, None)
        if prediction is None:
            self.unmatched += 1
            return None
        self.joined += 1
        metrics = self._metrics.get(prediction.model_version)
        if metrics is None:
            metrics = self._metrics[prediction.model_version] = self._new_metrics()
        if self.task == "classification":
            truth_label = as_label(truth)
            error = float(truth_label != prediction.label)
            metrics["accuracy"].update(truth_label, prediction.label)
            if "roc_auc" in metrics and prediction.positive is not None:
                positive = truth_label == self.classes[1]
                metrics["roc_auc"].update(positive, {True: prediction.positive, False: 1.0 - prediction.positive})
        else:
            error = abs(float(truth) - prediction.score)
            metrics["mae"].update(float(truth), prediction.score)
        if prediction.champion is not None:
            champion_label, champion_score = prediction.champion
            champion_error = (float(as_label(truth) != champion_label) if self.task == "classification"
                              else abs(float(truth) - champion_score))
            self.paired.update(champion_error, error)
        return LabelJoin(prediction=prediction, truth=truth, error=error)

    def metric_values(self) -> dict[tuple[str, str], float]:
        """(model version, metric) -> current value."""
        return {(version, name): float(m.get()) for version, ms in self._metrics.items() for name, m in ms.items()}

    def _new_metrics(self) -> dict[str, Any]:
        if self.task != "classification":
            return {"mae": river_metrics.MAE()}
        out: dict[str, Any] = {"accuracy": river_metrics.Accuracy()}
        if len(self.classes) == 2:
            out["roc_auc"] = river_metrics.ROCAUC()
        return out


class PairedComparison:
    """Champion and challenger errors on the same labelled events: the evidence for a promotion.

    For classifiers the metric is accuracy (1 - mean 0/1 error), for
    regressors the mean absolute error. Both are means over the same ``n``
    labels, so their difference is a paired comparison: the events are the
    same, only the model differs.
    """

    def __init__(self, task: str) -> None:
        self.task = task
        self.n = 0
        self.champion_errors = 0.0
        self.challenger_errors = 0.0

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.task == "classification" else "mae"

    def update(self, champion_error: float, challenger_error: float) -> None:
        self.n += 1
        self.champion_errors += champion_error
        self.challenger_errors += challenger_error

    def metrics(self) -> tuple[float, float]:
        """(champion, challenger) metric over the labels seen; NaN before the first."""
        if self.n == 0:
            return float("nan"), float("nan")
        champion, challenger = self.champion_errors / self.n, self.challenger_errors / self.n
        if self.task == "classification":
            return 1.0 - champion, 1.0 - challenger
        return champion, challenger

    def challenger_wins(self, min_labels: int, margin: float) -> bool:
        """At least ``min_labels`` paired labels, and the challenger better by at least ``margin``."""
        if min_labels <= 0 or self.n < min_labels:
            return False
        champion, challenger = self.metrics()
        gain = challenger - champion if self.task == "classification" else champion - challenger
        return gain >= margin

    def reset(self) -> None:
        self.n = 0
        self.champion_errors = self.challenger_errors = 0.0


def as_label(value: Any) -> str:
    """Labels compare as the strings the model's classes are: 1, 1.0 and "1" are all "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(int(value))
    return str(value)
