"""The compiled tree kernel gives scikit-learn's HistGradientBoosting outputs bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.trees import compile_trees


def data(n: int = 3000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)) * [1, 10, 0.1, 1e4, 1, 1]
    x[rng.random(n) < 0.05, 2] = np.nan  # missing values take each node's learned side
    y = (x[:, 0] + np.nan_to_num(x[:, 2]) * 5 + rng.normal(size=n) > 0.3).astype(int) + (x[:, 1] > 12)
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_classifier_probabilities_are_bit_identical(classes: int) -> None:
    x, y = data()
    y = np.minimum(y, classes - 1)
    model = make_pipeline(HistGradientBoostingClassifier(max_iter=60, random_state=0)).fit(x, y)
    compiled = compile_trees(model)
    assert compiled is not None
    probe, _ = data(2000, seed=4)
    assert np.array_equal(compiled.predict_proba(probe), model.predict_proba(probe))
    assert np.array_equal(compiled.predict(probe), model.predict(probe))
    assert np.array_equal(compiled.predict_proba(probe[:1]), model.predict_proba(probe[:1]))
    for n in (7, 8, 13, 64, 71):  # rows walked eight at a time in chunks of 64, and the rest one by one
        assert np.array_equal(compiled.predict_proba(probe[:n]), model.predict_proba(probe[:n]))


def test_regressor_predictions_are_bit_identical() -> None:
    x, _ = data()
    target = x[:, 0] * 3 + np.nan_to_num(x[:, 2])
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, target)
    compiled = compile_trees(model)
    assert compiled is not None
    probe, _ = data(1000, seed=5)
    assert np.array_equal(compiled.predict(probe), model.predict(probe))


def test_models_the_kernel_does_not_cover_keep_their_own_predict() -> None:
    x, y = data(500)
    categorical = np.column_stack([x[:, :2], np.abs(x[:, 3]).astype(int) % 4])
    with_categories = HistGradientBoostingClassifier(max_iter=5, categorical_features=[2]).fit(categorical, y)
    assert compile_trees(with_categories) is None
    assert compile_trees(make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=5)).fit(
        np.nan_to_num(x), y)) is None
    assert compile_trees(RandomForestClassifier(n_estimators=2).fit(np.nan_to_num(x), y)) is None
    with pytest.raises(ValueError, match="expected"):
        compile_trees(HistGradientBoostingClassifier(max_iter=5).fit(x, y)).predict_proba(x[:, :3])
