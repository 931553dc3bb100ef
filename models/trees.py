"""HistGradientBoosting ensembles predicted by one compiled kernel over the whole batch.

scikit-learn predicts a HistGradientBoosting model tree by tree, with a
Python call and an OpenMP region per tree: for 100 trees that costs more
than the tree walks themselves at micro-batch sizes. Here the fitted trees
are copied once into flat arrays and a numba kernel walks all of them. The
leaf values are added to the baseline in the same order as scikit-learn
adds them, and the link function is scikit-learn's own, so the outputs are
bit for bit those of ``predict_proba``/``predict`` (tested).

Anything else (categorical splits, a column preprocessor, other estimators,
pipelines with transforms) keeps scikit-learn's own predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["CompiledTrees", "compile_trees"]


@njit(cache=True)
def _raw_predict(x, roots, tree_column, feature, threshold, left, right, is_leaf, missing_left, value, raw):
    """Add every tree's leaf value to ``raw[row, tree_column[tree]]``, trees in order for each row."""
    for r in range(x.shape[0]):
        for t in range(roots.shape[0]):
            node = roots[t]
            while not is_leaf[node]:
                v = x[r, feature[node]]
                if np.isnan(v):
                    node = left[node] if missing_left[node] else right[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            raw[r, tree_column[t]] += value[node]


class CompiledTrees:
    """A fitted HistGradientBoostingClassifier or -Regressor as flat node arrays."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.is_classifier = hasattr(estimator, "predict_proba")
        nodes = [tree.nodes for trees in estimator._predictors for tree in trees]
        per_iteration = estimator.n_trees_per_iteration_
        offsets = np.cumsum([0] + [len(n) for n in nodes])
        flat = np.concatenate(nodes)
        self.roots = offsets[:-1].astype(np.int64)
        self.tree_column = np.tile(np.arange(per_iteration, dtype=np.int64), len(estimator._predictors))
        # child indexes are per tree: make them absolute
        base = np.repeat(offsets[:-1], [len(n) for n in nodes])
        self.left = (flat["left"].astype(np.int64) + base).astype(np.int32)
        self.right = (flat["right"].astype(np.int64) + base).astype(np.int32)
        self.feature = flat["feature_idx"].astype(np.int32)
        self.threshold = flat["num_threshold"].astype(np.float64)
        self.is_leaf = flat["is_leaf"].astype(np.bool_)
        self.missing_left = flat["missing_go_to_left"].astype(np.bool_)
        self.value = flat["value"].astype(np.float64)
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64)
        self.n_features = int(estimator.n_features_in_)

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions, ``(n, trees per iteration)``, as ``estimator._raw_predict`` gives them."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {x.shape}")
        raw = np.zeros((x.shape[0], self.baseline.shape[1]), dtype=np.float64)
        raw += self.baseline
        _raw_predict(x, self.roots, self.tree_column, self.feature, self.threshold, self.left, self.right,
                     self.is_leaf, self.missing_left, self.value, raw)
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.estimator._loss.predict_proba(self.raw_predict(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_predict(x)
        if self.is_classifier:
            return self.estimator.classes_[np.argmax(self.predict_proba(x), axis=1)]
        return self.estimator._loss.link.inverse(raw.ravel())


def compile_trees(model: Any) -> CompiledTrees | None:
    """The compiled form of ``model`` (a HistGradientBoosting estimator, alone or as a one-step pipeline), or None."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    estimator = model
    if isinstance(model, Pipeline):
        if len(model.steps) != 1:
            return None
        estimator = model.steps[0][1]
    if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return None
    if getattr(estimator, "_preprocessor", None) is not None:
        return None
    trees = [tree.nodes for per_iteration in estimator._predictors for tree in per_iteration]
    if any(nodes["is_categorical"].any() for nodes in trees) or sum(map(len, trees)) >= 2**31:
        return None
    return CompiledTrees(estimator)
