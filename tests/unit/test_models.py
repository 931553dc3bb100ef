"""Training, the artifact's manifest and its checks, and batch-invariant scoring."""

from __future__ import annotations

import copy
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from features import FeatureSpec, WindowSpec, compute_features
from models import BatchScorer, ModelArtifact, ModelLoadError, TrainingError, train_model
from models.artifact import file_sha256
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
    with (copy / small_model.manifest["artifact"]).open("ab") as f:
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


def test_skops_artifacts_load_only_allowed_types_and_checked_trees(small_model: ModelArtifact, tmp_path: Path) -> None:
    import skops.io

    assert small_model.manifest["artifact"] == "model.skops" and small_model.manifest["model_format"] == "skops"
    # a joblib artifact loads only when pickles are allowed
    pickled = ModelArtifact.save(tmp_path / "pickled", small_model.model, small_model.manifest, "joblib")
    assert (pickled.path / "model.joblib").is_file()
    ModelArtifact.load(pickled.path)
    with pytest.raises(ModelLoadError, match="allow_joblib is false") as info:
        ModelArtifact.load(pickled.path, allow_joblib=False)
    assert info.value.reason == "unsafe"

    # a file written by someone else, whose tree sends a walk past the end of its nodes: refused at load
    crafted = copy.deepcopy(small_model.model)
    nodes = crafted.steps[-1][1]._predictors[3][0].nodes
    split = np.flatnonzero(nodes["is_leaf"] == 0)[0]
    nodes["left"][split] = len(nodes) + 1000
    evil = tmp_path / "evil"
    shutil.copytree(small_model.path, evil)
    skops.io.dump(crafted, evil / "model.skops")
    manifest = json.loads((evil / "manifest.json").read_text())
    (evil / "manifest.json").write_text(json.dumps({**manifest, "sha256": file_sha256(evil / "model.skops")}))
    with pytest.raises(ModelLoadError, match="left child outside the nodes after its parent") as info:
        ModelArtifact.load(evil)
    assert info.value.reason == "unsafe"
    # and one whose split reads a feature beyond the row
    crafted = copy.deepcopy(small_model.model)
    crafted.steps[-1][1]._predictors[0][0].nodes["feature_idx"][0] = 10_000
    skops.io.dump(crafted, evil / "model.skops")
    (evil / "manifest.json").write_text(json.dumps({**manifest, "sha256": file_sha256(evil / "model.skops")}))
    with pytest.raises(ModelLoadError, match=r"feature index outside \[0, 40\)"):
        ModelArtifact.load(evil)
    # a type skops does not trust is refused before anything is built
    class_file = tmp_path / "other"
    ModelArtifact.save(class_file, {"model": small_model.model, "extra": Fraction(1, 3)},
                       {**small_model.manifest}, "joblib")
    skops.io.dump({"extra": Fraction(1, 3)}, class_file / "model.skops")
    (class_file / "model.joblib").unlink()
    manifest = json.loads((class_file / "manifest.json").read_text())
    (class_file / "manifest.json").write_text(json.dumps({**manifest, "artifact": "model.skops",
                                                           "sha256": file_sha256(class_file / "model.skops")}))
    with pytest.raises(ModelLoadError, match=r"does not load from skops: .*Fraction"):
        ModelArtifact.load(class_file)


def test_training_refuses_skops_for_a_model_it_cannot_hold(small_model: ModelArtifact, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="types the skops format does not load") as info:
        ModelArtifact.save(tmp_path / "m", {"extra": Fraction(1, 3)}, small_model.manifest, "skops")
    assert info.value.reason == "unsafe" and not (tmp_path / "m" / "model.skops").exists()
