"""A model artifact on disk: ``model.joblib`` plus ``manifest.json``, checked when loaded.

joblib files are pickles: loading one runs code chosen by whoever wrote it.
The sha256 in the manifest guards against a changed or truncated file, not
against a malicious author; load only artifacts from a source you trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from features import FeatureSpec
from models.exceptions import ModelLoadError

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "ModelArtifact", "file_sha256", "library_versions"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
# Bump when the manifest's meaning changes; loaders refuse newer formats.
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified model and its manifest."""

    path: Path
    model: Any
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["features"])

    @classmethod
    def save(cls, directory: Path, model: Any, manifest: Mapping[str, Any]) -> ModelArtifact:
        """Write ``model`` and its manifest (with the sha256 filled in) to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        model_path = directory / MODEL_FILE
        joblib.dump(model, model_path)
        full = {"format": MANIFEST_FORMAT, **manifest, "artifact": MODEL_FILE, "sha256": file_sha256(model_path)}
        tmp = directory / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        tmp.replace(directory / MANIFEST_FILE)
        return cls(path=directory, model=model, manifest=full)

    @classmethod
    def load(
        cls,
        directory: Path,
        spec: FeatureSpec | None = None,
        schema_fingerprint: str | None = None,
        expected_sha256: str | None = None,
    ) -> ModelArtifact:
        """Load and verify an artifact directory.

        Refuses (ModelLoadError, with its ``reason``) a missing or unreadable
        file, a sha256 that differs from the manifest's or from
        ``expected_sha256`` (a pin that a manifest rewritten with its model
        cannot pass), features that differ from ``spec``, and a model trained
        on another input schema than ``schema_fingerprint``.
        """
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ModelLoadError(f"no {MANIFEST_FILE} in model directory {directory} (train one with 'streamscore train')")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {manifest_path}: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ModelLoadError(f"{manifest_path} is not a JSON object")
        for key in ("name", "version", "features", "sha256"):
            if key not in manifest:
                raise ModelLoadError(f"{manifest_path} lacks the required key {key!r}")
        if int(manifest.get("format", 1)) > MANIFEST_FORMAT:
            raise ModelLoadError(f"{manifest_path} has format {manifest['format']}, newer than this streamscore reads")
        model_path = directory / manifest.get("artifact", MODEL_FILE)
        if not model_path.is_file():
            raise ModelLoadError(f"model file {model_path} is missing")
        digest = file_sha256(model_path)
        if digest != manifest["sha256"]:
            raise ModelLoadError(
                f"sha256 of {model_path} is {digest}, the manifest says {manifest['sha256']}: "
                "the file changed after training; refusing to load it", "sha256")
        if expected_sha256 is not None and digest != expected_sha256:
            raise ModelLoadError(
                f"sha256 of {model_path} is {digest}, model.sha256 pins {expected_sha256}: refusing to load it",
                "sha256")
        if spec is not None and tuple(manifest["features"]) != spec.feature_names:
            raise ModelLoadError(_feature_mismatch(tuple(manifest["features"]), spec.feature_names), "features")
        trained_on = manifest.get("input_schema_fingerprint")
        if schema_fingerprint and trained_on not in (None, schema_fingerprint):
            raise ModelLoadError(
                f"model {manifest['name']} {manifest['version']} was trained on input schema {trained_on}, "
                f"the configured reader schema is {schema_fingerprint}: retrain it on this schema", "schema")
        try:
            model = joblib.load(model_path)
        except Exception as exc:  # unpickling can raise anything the pickled code raises
            raise ModelLoadError(f"cannot unpickle {model_path}: {type(exc).__name__}: {exc}") from exc
        logger.info("loaded model %s version %s from %s", manifest["name"], manifest["version"], directory)
        return cls(path=directory, model=model, manifest=manifest)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of what a pickled model depends on, recorded in the manifest."""
    import numpy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


def _feature_mismatch(trained: tuple[str, ...], configured: tuple[str, ...]) -> str:
    missing = [f for f in trained if f not in configured]
    extra = [f for f in configured if f not in trained]
    if not missing and not extra:
        return "the model's features are in a different order than the configured feature spec"
    parts = []
    if missing:
        parts.append(f"the model needs {missing[:5]}{' ...' if len(missing) > 5 else ''} which the config does not compute")
    if extra:
        parts.append(f"the config computes {extra[:5]}{' ...' if len(extra) > 5 else ''} which the model was not trained on")
    return "model features differ from the configured feature spec: " + "; ".join(parts)
