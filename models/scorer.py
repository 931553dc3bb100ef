"""One model call per micro-batch: an ``(n, f)`` matrix in, a score per row out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.artifact import ModelArtifact
from models.exceptions import ModelLoadError
from models.trees import compile_trees

__all__ = ["BatchScorer", "Scores", "limit_model_threads"]


def limit_model_threads(threads: int) -> object:
    """Cap the OpenMP and BLAS threads model calls use, for this process; keep the returned handle."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


@dataclass(frozen=True)
class Scores:
    """Outputs for a batch, row-aligned with its feature matrix.

    ``score`` is P(positive class) for binary classifiers, the probability of
    the predicted class for multi-class ones, and the prediction for
    regressors. ``probabilities`` is ``(n, k)`` or None for regressors;
    ``label_index`` indexes ``classes`` (None for regressors).
    """

    score: np.ndarray
    label: list[str] | None
    probabilities: np.ndarray | None
    classes: tuple[str, ...]
    label_index: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Scores:
        """The outputs of ``rows`` only (an index array or a boolean mask)."""
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return Scores(
            score=self.score[idx],
            label=[self.label[i] for i in idx.tolist()] if self.label is not None else None,
            probabilities=self.probabilities[idx] if self.probabilities is not None else None,
            classes=self.classes,
            label_index=self.label_index[idx] if self.label_index is not None else None,
        )


class BatchScorer:
    """Scores feature matrices with a loaded artifact's model."""

    def __init__(self, artifact: ModelArtifact, compiled: bool = True) -> None:
        self.artifact = artifact
        model = artifact.model
        self._proba = hasattr(model, "predict_proba")
        if not self._proba and not hasattr(model, "predict"):
            raise ModelLoadError(f"model in {artifact.path} has neither predict_proba nor predict")
        classes = getattr(model, "classes_", None)
        self.classes: tuple[str, ...] = tuple(str(c) for c in classes) if self._proba and classes is not None else ()
        self.n_features = len(artifact.feature_names)
        # the compiled tree kernel where it covers the model (same outputs), else the model's own methods
        trees = compile_trees(model) if compiled else None
        self.compiled = trees is not None
        method = "predict_proba" if self._proba else "predict"
        self._call: Callable[[np.ndarray], np.ndarray] = getattr(trees if trees is not None else model, method)

    @classmethod
    def for_model(cls, model: object, feature_names: tuple[str, ...]) -> BatchScorer:
        """A scorer for a fitted model not yet saved as an artifact (training uses it)."""
        from pathlib import Path

        return cls(ModelArtifact(Path("."), model, {"name": "", "version": "", "features": list(feature_names)}))

    def score(self, features: np.ndarray) -> Scores:
        """Score every row; one model call whatever the batch size."""
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"expected a (n, {self.n_features}) matrix, got shape {features.shape}")
        if not self._proba:
            return Scores(np.asarray(self._call(features), dtype=np.float64), None, None, ())
        proba = np.asarray(self._call(features), dtype=np.float64)
        best = np.argmax(proba, axis=1)
        labels = [self.classes[i] for i in best]
        score = proba[:, 1] if proba.shape[1] == 2 else proba[np.arange(len(best)), best]
        return Scores(score, labels, proba, self.classes, best)
