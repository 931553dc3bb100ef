"""The delayed-label join: bounded cache, unmatched and unlabelled counts, online metrics, errors."""

from __future__ import annotations

import pytest

from models.labels import CachedPrediction, LabelJoiner


def prediction(i: int, label: str = "1", positive: float = 0.9, at: float = 0.0, score: float = 0.9) -> CachedPrediction:
    return CachedPrediction(score=score, label=label, positive=positive, model_version="3", topic="in",
                            partition=0, offset=i, event_time=i, cached_at=at)


def test_join_gives_the_error_and_updates_metrics() -> None:
    joiner = LabelJoiner("classification", ["0", "1"])
    joiner.add("a", prediction(1, "1", 0.9))
    joiner.add("b", prediction(2, "0", 0.2))
    joiner.add("c", prediction(3, "1", 0.6))
    joiner.add("d", prediction(4, "1", 0.7))
    assert joiner.join("a", "1").error == 0.0
    assert joiner.join("b", 0).error == 0.0  # numbers compare as the class strings
    assert joiner.join("c", 1.0).error == 0.0
    assert joiner.join("d", "0").error == 1.0
    values = joiner.metric_values()
    assert values[("3", "accuracy")] == pytest.approx(3 / 4)
    # positives 0.9 and 0.6, negatives 0.2 and 0.7: three of four pairs ranked right
    assert values[("3", "roc_auc")] == pytest.approx(0.75, abs=0.05)
    assert joiner.joined == 4 and joiner.unmatched == 0 and len(joiner) == 0


def test_unknown_and_repeated_labels_are_unmatched() -> None:
    joiner = LabelJoiner("classification", ["0", "1"])
    joiner.add("a", prediction(1))
    assert joiner.join("zzz", "1") is None
    assert joiner.join("a", "1") is not None
    assert joiner.join("a", "1") is None
    assert (joiner.joined, joiner.unmatched) == (1, 2)


def test_cache_is_bounded_by_size_and_age() -> None:
    joiner = LabelJoiner("classification", ["0", "1"], max_size=3, max_age_s=10.0)
    for i in range(5):
        joiner.add(str(i), prediction(i, at=float(i)))
    assert len(joiner) == 3 and joiner.unlabelled == 2
    assert joiner.join("0", "1") is None  # left the cache: a late label
    joiner.expire(now=13.5)  # "2" and "3" are older than 10 s
    assert len(joiner) == 1 and joiner.unlabelled == 4
    assert joiner.join("4", "1") is not None


def test_regression_error_is_absolute() -> None:
    joiner = LabelJoiner("regression", [])
    joiner.add("a", CachedPrediction(2.5, None, None, "1", "in", 0, 0, 0, 0.0))
    joined = joiner.join("a", 4.0)
    assert joined is not None and joined.error == 1.5
    assert joiner.metric_values() == {("1", "mae"): 1.5}
