"""Training, the artifact's manifest and its checks, and batch-invariant scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from features import FeatureSpec, WindowSpec, compute_features
from models import BatchScorer, ModelArtifact, ModelLoadError, TrainingError, train_model
from stream.config import ServiceConfig
from stream.tools.generators import sensor_events


def sensor_data(n: int, spec: FeatureSpec, seed: int = 5):
    pairs = list(sensor_events(n, 30, seed))
    x = compute_features(spec, [r for r, _ in pairs], "sensor_id", "ts")
    return x, [y for _, y in pairs]


def test_manifest_describes_the_model(small_model: ModelArtifact, small_config: ServiceConfig) -> None:
    manifest = json.loads((small_model.path / "manifest.json").read_text())
    assert manifest["features"] == list(small_config.features.feature_names)
    assert manifest["input_schema_fingerprint"] == small_config.schema_fingerprint
    assert set(manifest["library_versions"]) >= {"python", "scikit-learn", "numpy", "joblib"}
    assert len(manifest["sha256"]) == 64
    assert 0.5 < manifest["metrics"]["roc_auc"] <= 1.0
    assert manifest["metrics"]["n_train"] + manifest["metrics"]["n_test"] == 6000
    reference = manifest["reference"]
    assert set(reference["features"]) == set(manifest["features"])
    assert set(reference["inputs"]) == set(small_config.features.fields)
    assert 0.0 <= reference["score"]["q01"] <= reference["score"]["q99"] <= 1.0
    assert 50 < reference["inputs"]["temperature"]["mean"] < 70
    assert FeatureSpec.from_dict(manifest["feature_spec"]) == small_config.features


def test_loading_refuses_a_changed_model_file(small_model: ModelArtifact, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(small_model.path, copy)
    with (copy / "model.joblib").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelLoadError, match=r"sha256 of .* is [0-9a-f]{64}, the manifest says"):
        ModelArtifact.load(copy)


def test_loading_refuses_features_that_differ_from_the_spec(small_model: ModelArtifact, small_config: ServiceConfig) -> None:
    spec = small_config.features
    other = FeatureSpec(fields=spec.fields[:-1], windows=spec.windows)
    with pytest.raises(ModelLoadError, match="the model needs \\['humidity__n16__mean'"):
        ModelArtifact.load(small_model.path, other)
    reordered = FeatureSpec(fields=tuple(reversed(spec.fields)), windows=spec.windows)
    with pytest.raises(ModelLoadError, match="different order"):
        ModelArtifact.load(small_model.path, reordered)
    assert ModelArtifact.load(small_model.path, spec).feature_names == spec.feature_names


def test_loading_names_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no manifest\.json"):
        ModelArtifact.load(tmp_path)


def test_tree_scores_are_identical_in_any_batch_size(small_model: ModelArtifact, small_config: ServiceConfig) -> None:
    x, _ = sensor_data(2000, small_config.features)
    scorer = BatchScorer(small_model)
    whole = scorer.score(x)
    singles = np.array([scorer.score(x[i : i + 1]).score[0] for i in range(0, 2000, 7)])
    assert np.array_equal(singles, whole.score[::7])
    chunks = np.concatenate([scorer.score(x[i : i + 333]).score for i in range(0, 2000, 333)])
    assert np.array_equal(chunks, whole.score)
    assert whole.probabilities is not None and np.allclose(whole.probabilities.sum(axis=1), 1.0)
    assert set(whole.label) <= set(small_model.manifest["classes"])


def test_linear_scores_agree_within_1e9_in_any_batch_size(tmp_path: Path) -> None:
    spec = FeatureSpec(fields=("temperature", "vibration"), windows=(WindowSpec("count", size=8),))
    x, y = sensor_data(3000, spec)
    trained = train_model(x, y, "classification", "logistic_regression", {"max_iter": 500}, seed=1)
    artifact = ModelArtifact.save(tmp_path, trained.model, {"name": "lr", "version": "1", "features": list(spec.feature_names)})
    scorer = BatchScorer(ModelArtifact.load(tmp_path, spec))
    whole = scorer.score(x).score
    singles = np.array([scorer.score(x[i : i + 1]).score[0] for i in range(len(x))])
    np.testing.assert_allclose(singles, whole, rtol=1e-9, atol=1e-12)
    assert artifact.manifest["sha256"] == ModelArtifact.load(tmp_path).manifest["sha256"]


def test_regressor_scores_without_probabilities(tmp_path: Path) -> None:
    spec = FeatureSpec(fields=("temperature",), windows=(WindowSpec("count", size=4),))
    x, _ = sensor_data(500, spec)
    y = x[:, 0] * 2.0
    trained = train_model(x, y, "regression", "hist_gradient_boosting", {"max_iter": 10}, seed=1)
    assert "mae" in trained.metrics
    ModelArtifact.save(tmp_path, trained.model, {"name": "r", "version": "1", "features": list(spec.feature_names)})
    scores = BatchScorer(ModelArtifact.load(tmp_path)).score(x[:10])
    assert scores.probabilities is None and scores.label is None and scores.score.shape == (10,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"estimator": "xgboost"}, "unknown estimator"),
        ({"task": "ranking"}, "training task must be"),
        ({"params": {"max_itr": 3}}, "bad parameters"),
    ],
)
def test_training_errors_are_clear(kwargs: dict, message: str) -> None:
    x = np.random.default_rng(0).normal(size=(100, 3))
    args = {"task": "classification", "estimator": "hist_gradient_boosting", "params": {}, **kwargs}
    with pytest.raises(TrainingError, match=message):
        train_model(x, np.arange(100) % 2, args["task"], args["estimator"], args["params"])


def test_one_class_is_refused() -> None:
    with pytest.raises(TrainingError, match="one class"):
        train_model(np.zeros((100, 2)), np.zeros(100), "classification", "logistic_regression", {})
