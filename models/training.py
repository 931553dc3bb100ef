"""Fitting a scikit-learn estimator on window features, with metrics and reference statistics."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, r2_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models.exceptions import TrainingError

__all__ = ["ESTIMATORS", "TrainedModel", "build_estimator", "reference_statistics", "train_model"]

logger = logging.getLogger(__name__)

# estimator name -> (classifier factory, regressor factory)
ESTIMATORS: dict[str, tuple[Any, Any]] = {
    "hist_gradient_boosting": (HistGradientBoostingClassifier, HistGradientBoostingRegressor),
    "logistic_regression": (LogisticRegression, Ridge),
}
TASKS = ("classification", "regression")
# Quantiles kept per feature as the reference distribution for drift checks.
REFERENCE_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted pipeline and what it scored on held-out data."""

    model: Pipeline
    metrics: dict[str, float]


def build_estimator(task: str, estimator: str, params: Mapping[str, Any], seed: int) -> Pipeline:
    """An unfitted pipeline; linear models get a StandardScaler in front."""
    if task not in TASKS:
        raise TrainingError(f"training task must be one of {TASKS}, got {task!r}")
    if estimator not in ESTIMATORS:
        raise TrainingError(f"unknown estimator {estimator!r}; choose from {sorted(ESTIMATORS)}")
    factory = ESTIMATORS[estimator][0 if task == "classification" else 1]
    kwargs = dict(params)
    if "random_state" in factory().get_params():
        kwargs.setdefault("random_state", seed)
    try:
        model: BaseEstimator = factory(**kwargs)
    except TypeError as exc:
        raise TrainingError(f"bad parameters for {estimator}: {exc}") from exc
    if estimator == "logistic_regression":
        return make_pipeline(StandardScaler(), model)
    return make_pipeline(model)


def train_model(
    features: np.ndarray,
    target: Sequence[Any],
    task: str,
    estimator: str,
    params: Mapping[str, Any],
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TrainedModel:
    """Fit on the first part of the stream, measure on the last (a time-ordered split)."""
    y = np.asarray(target)
    n = len(y)
    if features.shape[0] != n:
        raise TrainingError(f"{features.shape[0]} feature rows but {n} targets")
    if not 0.0 < test_fraction < 1.0:
        raise TrainingError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(n * test_fraction))
    if n - n_test < 10:
        raise TrainingError(f"only {n} events: too few to train on")
    x_train, x_test, y_train, y_test = features[:-n_test], features[-n_test:], y[:-n_test], y[-n_test:]
    if task == "classification" and len(np.unique(y_train)) < 2:
        raise TrainingError("the training data holds one class only")
    model = build_estimator(task, estimator, params, seed)
    model.fit(x_train, y_train)
    metrics: dict[str, float] = {"n_train": float(len(y_train)), "n_test": float(n_test)}
    if task == "classification":
        proba = model.predict_proba(x_test)
        metrics["accuracy"] = float(accuracy_score(y_test, model.predict(x_test)))
        if proba.shape[1] == 2 and len(np.unique(y_test)) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_test, proba[:, 1]))
        metrics["log_loss"] = float(log_loss(y_test, proba, labels=model.classes_))
        metrics["positive_rate"] = float(np.mean(y_train == model.classes_[-1]))
    else:
        pred = model.predict(x_test)
        metrics["mae"] = float(mean_absolute_error(y_test, pred))
        metrics["r2"] = float(r2_score(y_test, pred))
    logger.info("trained %s: %s", estimator, metrics)
    return TrainedModel(model=model, metrics=metrics)


def reference_statistics(features: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-feature mean, std and quantiles of the training data, kept for drift checks."""
    qs = np.quantile(features, REFERENCE_QUANTILES, axis=0)
    return {
        name: {
            "mean": float(np.mean(features[:, i])),
            "std": float(np.std(features[:, i])),
            **{f"q{int(q * 100):02d}": float(qs[j, i]) for j, q in enumerate(REFERENCE_QUANTILES)},
        }
        for i, name in enumerate(names)
    }
