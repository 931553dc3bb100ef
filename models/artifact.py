"""A model artifact on disk: the model file plus ``manifest.json``, checked when loaded.

Two formats. ``model.skops`` (the default for ``streamscore train``) loads
only types skops trusts, plus scikit-learn's ``TreePredictor``, which is
trusted only because every tree's node arrays are bounds-checked before
anything walks them (``trees.check_tree_nodes``). ``model.joblib`` is a
pickle: loading one runs code chosen by whoever wrote it, so load it only
from a source you trust (``model.allow_joblib = false`` refuses it). The
sha256 in the manifest guards against a changed or truncated file, not
against a malicious author; ``model.sha256`` pins the expected digest.
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

__all__ = ["FORMATS", "MANIFEST_FILE", "MODEL_FILE", "SKOPS_FILE", "ModelArtifact", "file_sha256", "library_versions", "model_file"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
SKOPS_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
FORMATS = {"skops": SKOPS_FILE, "joblib": MODEL_FILE}
# Types a skops file may hold beyond skops's own trusted list: only this one, checked by check_tree_nodes.
SKOPS_TRUSTED = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)
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
    def save(cls, directory: Path, model: Any, manifest: Mapping[str, Any], model_format: str = "joblib") -> ModelArtifact:
        """Write ``model`` and its manifest (with the sha256 filled in) to ``directory``.

        ``model_format`` ``"skops"`` refuses (ModelLoadError, reason
        ``unsafe``) a model holding types that format does not load.
        """
        if model_format not in FORMATS:
            raise ModelLoadError(f"model format must be one of {sorted(FORMATS)}, got {model_format!r}")
        directory.mkdir(parents=True, exist_ok=True)
        model_path = directory / FORMATS[model_format]
        if model_format == "skops":
            import skops.io

            skops.io.dump(model, model_path)
            untrusted = sorted(set(skops.io.get_untrusted_types(file=model_path)) - set(SKOPS_TRUSTED))
            if untrusted:
                model_path.unlink()
                raise ModelLoadError(f"the model holds types the skops format does not load: {untrusted}; save it "
                                     "as joblib (training.format = 'joblib'), a pickle to load only from a trusted "
                                     "source", "unsafe")
        else:
            joblib.dump(model, model_path)
        for other in FORMATS.values():  # one model file per folder
            if other != model_path.name and (directory / other).exists():
                (directory / other).unlink()
        full = {"format": MANIFEST_FORMAT, **manifest, "artifact": model_path.name, "model_format": model_format,
                "sha256": file_sha256(model_path)}
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
        allow_joblib: bool = True,
    ) -> ModelArtifact:
        """Load and verify an artifact directory.

        Refuses (ModelLoadError, with its ``reason``) a missing or unreadable
        file, a sha256 that differs from the manifest's or from
        ``expected_sha256`` (a pin that a manifest rewritten with its model
        cannot pass), and features that differ from ``spec``. A model trained
        on another input schema than ``schema_fingerprint`` is logged, not
        refused: compatible schema evolution changes the fingerprint too.
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
        model_path = directory / model_file(manifest)
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
            logger.warning("model %s %s was trained on input schema %s, the configured reader schema is %s "
                           "(compatible evolution changes it too)", manifest["name"], manifest["version"],
                           trained_on, schema_fingerprint)
        if model_path.suffix == ".skops":
            model = _load_skops(model_path, len(manifest["features"]))
        elif not allow_joblib:
            raise ModelLoadError(f"{model_path} is a pickle (joblib) and model.allow_joblib is false: retrain it "
                                 "as skops (training.format = 'skops')", "unsafe")
        else:
            try:
                model = joblib.load(model_path)
            except Exception as exc:  # unpickling can raise anything the pickled code raises
                raise ModelLoadError(f"cannot unpickle {model_path}: {type(exc).__name__}: {exc}") from exc
        logger.info("loaded model %s version %s from %s", manifest["name"], manifest["version"], directory)
        return cls(path=directory, model=model, manifest=manifest)


def model_file(manifest: Mapping[str, Any]) -> str:
    """The model file's name in an artifact folder; ModelLoadError for a name that is not one of ours."""
    name = str(manifest.get("artifact", MODEL_FILE))
    if name not in FORMATS.values():
        raise ModelLoadError(f"the manifest names model file {name!r}; it must be one of {sorted(FORMATS.values())}")
    return name


def _load_skops(path: Path, n_features: int) -> Any:
    """A skops file holding only trusted types, its trees checked before anything predicts with them."""
    import skops.io

    from models.trees import check_tree_nodes

    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(SKOPS_TRUSTED))
        if untrusted:
            raise ModelLoadError(f"{path} holds types streamscore does not load from skops: {untrusted}", "unsafe")
        model = skops.io.load(path, trusted=list(SKOPS_TRUSTED))
    except ModelLoadError:
        raise
    except Exception as exc:  # a malformed file: whatever the reader raises, the artifact is refused
        raise ModelLoadError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    try:
        check_tree_nodes(model, n_features)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: {exc}: refusing a model whose trees could be walked out of bounds",
                             "unsafe") from exc
    return model


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
        **_version_of("skops"),
    }


def _version_of(package: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {package: version(package)}
    except PackageNotFoundError:
        return {}


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
