"""HistGradientBoosting ensembles predicted by one compiled kernel over the whole batch.

scikit-learn predicts a HistGradientBoosting model tree by tree, with a
Python call and an OpenMP region per tree: for 100 trees that costs more
than the tree walks themselves at micro-batch sizes. Here the fitted trees
are copied once into flat arrays and a numba kernel walks all of them,
eight rows at a time through each tree. The leaf values are added to the
baseline in the same order as scikit-learn adds them, and the link function
is scikit-learn's own, so the outputs are bit for bit those of
``predict_proba``/``predict`` (tested).

Anything else (categorical splits, a column preprocessor, other estimators,
pipelines with transforms) keeps scikit-learn's own predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["CompiledTrees", "check_tree_nodes", "compile_trees"]


# Rows walked together through one tree: independent walks overlap in the
# CPU instead of each waiting on its own chain of loads and mispredicted
# branches (2.06-2.26 against 3.02-3.06 us per row one at a time, batches of
# 1,000 rows of the demo model; bench/README.md).
LANES = 8
# Rows per chunk: the chunk's features stay in L1 while every tree walks them.
CHUNK = 64


class CompiledTrees:
    """A fitted HistGradientBoostingClassifier or -Regressor as flat node arrays.

    Each tree is laid out breadth first so that a node's right child follows
    its left one: a step down is ``left + (go right)``, with no branch on the
    comparison. A leaf points to itself, with an infinite threshold, so a
    walk that reached it stays there while the other lanes go on.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.is_classifier = hasattr(estimator, "predict_proba")
        trees = [tree.nodes for per_iteration in estimator._predictors for tree in per_iteration]
        self.tree_column = np.tile(np.arange(estimator.n_trees_per_iteration_, dtype=np.int64),
                                   len(estimator._predictors))
        self.roots, self.feature, self.threshold, self.left, self.missing_left, self.value = _breadth_first(trees)
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64)
        self.n_features = int(estimator.n_features_in_)

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions, ``(n, trees per iteration)``, as ``estimator._raw_predict`` gives them."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {x.shape}")
        raw = np.zeros((x.shape[0], self.baseline.shape[1]), dtype=np.float64)
        raw += self.baseline
        _raw_predict(x, self.roots, self.tree_column, self.feature, self.threshold, self.left, self.missing_left,
                     self.value, raw)
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.estimator._loss.predict_proba(self.raw_predict(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_predict(x)
        if self.is_classifier:
            return self.estimator.classes_[np.argmax(self.predict_proba(x), axis=1)]
        return self.estimator._loss.link.inverse(raw.ravel())


def _breadth_first(trees: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Roots, then per node: feature, threshold, left child (right = left + 1), missing-goes-left, leaf value."""
    roots, order, n = [], [], 0
    for nodes in trees:
        index = [0]  # positions in scikit-learn's node array (the root is 0), breadth first
        at = 0
        while at < len(index):
            node = nodes[index[at]]
            if not node["is_leaf"]:
                index += [int(node["left"]), int(node["right"])]
            at += 1
        roots.append(n)
        order.append((nodes, index))
        n += len(index)
    feature = np.zeros(n, dtype=np.int32)
    threshold = np.full(n, np.inf)
    left = np.arange(n, dtype=np.int32)  # a leaf points to itself
    missing_left = np.ones(n, dtype=np.bool_)
    value = np.zeros(n, dtype=np.float64)
    for (nodes, index), base in zip(order, roots):
        new_position = {old: base + k for k, old in enumerate(index)}
        for k, old in enumerate(index):
            node = nodes[old]
            value[base + k] = node["value"]
            if not node["is_leaf"]:
                feature[base + k] = node["feature_idx"]
                threshold[base + k] = node["num_threshold"]
                left[base + k] = new_position[int(node["left"])]
                missing_left[base + k] = node["missing_go_to_left"]
    return np.asarray(roots, dtype=np.int64), feature, threshold, left, missing_left, value


@njit(cache=True)
def _step(x, r, k, feature, threshold, left, missing_left):
    """The next node of row ``r`` below node ``k`` (itself at a leaf)."""
    v = x[r, feature[k]]
    return left[k] + ((v > threshold[k]) | ((v != v) & (not missing_left[k])))


# nogil: a challenger scored on another thread runs beside the loop, not after it
@njit(cache=True, nogil=True)
def _raw_predict(x, roots, tree_column, feature, threshold, left, missing_left, value, raw):
    """Add every tree's leaf value to ``raw[row, tree_column[tree]]``, trees in order for each row."""
    n = x.shape[0]
    for c0 in range(0, n, CHUNK):
        c1 = min(n, c0 + CHUNK)
        for t in range(roots.shape[0]):
            root, col = roots[t], tree_column[t]
            r = c0
            while r + LANES <= c1:
                k0 = k1 = k2 = k3 = k4 = k5 = k6 = k7 = root
                while not (left[k0] == k0 and left[k1] == k1 and left[k2] == k2 and left[k3] == k3
                           and left[k4] == k4 and left[k5] == k5 and left[k6] == k6 and left[k7] == k7):
                    k0 = _step(x, r, k0, feature, threshold, left, missing_left)
                    k1 = _step(x, r + 1, k1, feature, threshold, left, missing_left)
                    k2 = _step(x, r + 2, k2, feature, threshold, left, missing_left)
                    k3 = _step(x, r + 3, k3, feature, threshold, left, missing_left)
                    k4 = _step(x, r + 4, k4, feature, threshold, left, missing_left)
                    k5 = _step(x, r + 5, k5, feature, threshold, left, missing_left)
                    k6 = _step(x, r + 6, k6, feature, threshold, left, missing_left)
                    k7 = _step(x, r + 7, k7, feature, threshold, left, missing_left)
                raw[r, col] += value[k0]
                raw[r + 1, col] += value[k1]
                raw[r + 2, col] += value[k2]
                raw[r + 3, col] += value[k3]
                raw[r + 4, col] += value[k4]
                raw[r + 5, col] += value[k5]
                raw[r + 6, col] += value[k6]
                raw[r + 7, col] += value[k7]
                r += LANES
            while r < c1:
                k = root
                while left[k] != k:
                    k = _step(x, r, k, feature, threshold, left, missing_left)
                raw[r, col] += value[k]
                r += 1


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


def check_tree_nodes(model: Any, n_features: int) -> None:
    """Raise ValueError unless every HistGradientBoosting tree in ``model`` is safe to walk.

    scikit-learn's predictor, and the kernel above, follow each node's child
    and feature indices without bounds checks. Here, before either runs: the
    node array has scikit-learn's record type; every split node's feature
    index is below the model's feature count (which must be ``n_features``)
    and its children come after it and inside the array (so every walk ends
    at a leaf); no split is categorical (their bitsets would be indexed too);
    thresholds are not NaN and leaf values are finite. A model that is not a
    HistGradientBoosting estimator (or a one-step pipeline of one) passes
    untouched.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.pipeline import Pipeline

    estimators = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
    for estimator in estimators:
        if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
            continue
        if int(estimator.n_features_in_) != n_features:
            raise ValueError(f"the model takes {estimator.n_features_in_} features, its manifest names {n_features}")
        per_iteration = int(estimator.n_trees_per_iteration_)
        for i, trees in enumerate(estimator._predictors):
            if len(trees) != per_iteration:
                raise ValueError(f"iteration {i} has {len(trees)} trees, expected {per_iteration}")
            for tree in trees:
                if type(tree) is not TreePredictor:
                    raise ValueError(f"iteration {i} holds a {type(tree).__name__}, not a TreePredictor")
                _check_nodes(tree.nodes, n_features, PREDICTOR_RECORD_DTYPE, i)


def _check_nodes(nodes: Any, n_features: int, dtype: Any, iteration: int) -> None:
    if not isinstance(nodes, np.ndarray) or nodes.dtype != dtype or nodes.ndim != 1 or len(nodes) == 0:
        raise ValueError(f"a tree of iteration {iteration} has no node array of scikit-learn's record type")
    n = len(nodes)
    split = nodes["is_leaf"] == 0
    index = np.arange(n)
    where = f"a tree of iteration {iteration}"
    if np.any(nodes["is_categorical"][split] != 0):
        raise ValueError(f"{where} has categorical splits, which this check does not cover")
    feature = nodes["feature_idx"][split]
    if np.any(feature < 0) or np.any(feature >= n_features):
        raise ValueError(f"{where} splits on a feature index outside [0, {n_features})")
    for child in ("left", "right"):
        c = nodes[child][split].astype(np.int64)
        if np.any(c <= index[split]) or np.any(c >= n):
            raise ValueError(f"{where} has a {child} child outside the nodes after its parent")
    if np.any(np.isnan(nodes["num_threshold"][split])):
        raise ValueError(f"{where} has a NaN threshold")
    if not np.all(np.isfinite(nodes["value"][~split])):
        raise ValueError(f"{where} has a non-finite leaf value")
