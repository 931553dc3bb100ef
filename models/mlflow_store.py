"""The MLflow Model Registry as a model store: registered models, numbered versions, aliases.

Each version's files are a streamscore artifact (the model file and
``manifest.json``), logged as the artifacts of an MLflow run and registered
as a model version whose source is that folder; ``models:/<name>@<alias>``
names what an alias points to. A version is downloaded once into a local
cache (under a temporary name, then renamed) and checked like any artifact
when it is loaded. MLflow keeps no alias history, so the versions an alias
named before are kept in a registered-model tag, for ``rollback``.

MLflow is an optional extra (``pip install 'streamscore[mlflow]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from models.artifact import MANIFEST_FILE
from models.exceptions import ModelStoreError, ModelStoreUnavailableError, UnknownAliasError
from models.store import StoredVersion, check_name, checked_source, read_manifest

__all__ = ["MlflowModelStore"]

# Registered-model tag holding, per alias, the versions it named before (JSON list).
HISTORY_TAG = "streamscore.previous."
SHA256_TAG = "streamscore.sha256"
EXPERIMENT = "streamscore-models"
# The client's own retries would hold a caller for minutes when the server is down; the scorer retries itself.
CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class MlflowModelStore:
    """Versions and aliases of models in an MLflow tracking server's registry."""

    def __init__(self, tracking_uri: str, cache_dir: Path | str | None = None) -> None:
        try:
            import mlflow  # noqa: F401 - only to fail early with a clear message
        except ImportError as exc:
            raise ModelStoreError(f"model store {tracking_uri} is an MLflow registry, and mlflow is not installed: "
                                  "pip install 'streamscore[mlflow]'") from exc
        for key, value in CLIENT_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
        # where downloaded versions are kept: versions are immutable, so a copy never goes stale
        self.root = Path(cache_dir) if cache_dir is not None else (
            Path(tempfile.gettempdir()) / "streamscore-models" / digest)

    def models(self) -> list[str]:
        return sorted(m.name for m in self._call(lambda: self.client.search_registered_models()))

    def versions(self, model: str) -> list[StoredVersion]:
        """Every version of ``model``, oldest first (downloaded into the cache)."""
        found = self._call(lambda: self.client.search_model_versions(f"name='{_quoted(model)}'"), model)
        if not found and model not in self.models():
            raise self._no_model(model)
        return [self.version(model, str(v.version)) for v in sorted(found, key=lambda v: int(v.version))]

    def version(self, model: str, version: str) -> StoredVersion:
        """One version, downloaded into the cache if it is not there yet."""
        check_name(model, "model")
        check_name(version, "version")
        folder = self.root / model / version
        if not folder.is_dir():
            self._call(lambda: self.client.get_model_version(model, version), model, version)
            folder.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
            try:
                import mlflow

                source = self._call(lambda: self.client.get_model_version_download_uri(model, version), model,
                                    version)
                got = Path(self._call(lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=str(partial), tracking_uri=self.tracking_uri), model, version))
                manifest = read_manifest(got)
                # the registry numbers versions: predictions name the registry's name and number
                (got / MANIFEST_FILE).write_text(json.dumps({**manifest, "name": model, "version": version},
                                                            indent=2, sort_keys=True) + "\n")
                if got != partial:
                    for item in got.iterdir():
                        shutil.move(str(item), partial / item.name)
                os.rename(partial, folder)
            except FileExistsError:
                shutil.rmtree(partial, ignore_errors=True)  # another process downloaded it meanwhile
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        return StoredVersion(model, version, folder, read_manifest(folder))

    def register(self, model: str, source: Path | str, version: str | None = None) -> StoredVersion:
        """Log the artifact in ``source`` to a run and register it as the next version of ``model``."""
        check_name(model, "model")
        if version is not None:
            raise ModelStoreError("the MLflow registry numbers versions itself: leave out --version")
        source = Path(source)
        manifest, _ = checked_source(source)
        actual = str(manifest["sha256"])
        def log() -> Any:
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(EXPERIMENT))
            run = self.client.create_run(experiment_id, tags={"mlflow.runName": f"{model}-register"})
            self.client.log_artifacts(run.info.run_id, str(source), artifact_path="streamscore")
            self.client.set_terminated(run.info.run_id)
            if not self.client.search_registered_models(f"name='{_quoted(model)}'"):
                self.client.create_registered_model(model)
            return self.client.create_model_version(
                model, f"{run.info.artifact_uri}/streamscore", run_id=run.info.run_id, tags={SHA256_TAG: actual})

        created = self._call(log, model)
        return self.version(model, str(created.version))

    def aliases(self, model: str) -> dict[str, str]:
        registered = self._call(lambda: self.client.get_registered_model(model), model)
        return {alias: str(v) for alias, v in dict(registered.aliases or {}).items()}

    def resolve(self, model: str, alias: str) -> StoredVersion:
        check_name(alias, "alias")
        aliases = self.aliases(model)
        if alias not in aliases:
            raise UnknownAliasError(f"model {model!r} has no alias {alias!r} "
                                    f"(aliases: {', '.join(sorted(aliases)) or 'none'})")
        return self.version(model, aliases[alias])

    def set_alias(self, model: str, alias: str, version: str) -> StoredVersion:
        check_name(alias, "alias")
        target = self.version(model, version)
        current = self.aliases(model).get(alias)
        if current != version:
            history = self._history(model, alias)
            if current is not None:
                history.append(current)
            self._call(lambda: self.client.set_registered_model_tag(model, HISTORY_TAG + alias, json.dumps(history)),
                       model)
            self._call(lambda: self.client.set_registered_model_alias(model, alias, version), model)
        return target

    def promote(self, model: str, source: str = "challenger", target: str = "champion") -> StoredVersion:
        return self.set_alias(model, target, self.resolve(model, source).version)

    def rollback(self, model: str, alias: str = "champion") -> StoredVersion:
        aliases = self.aliases(model)
        if alias not in aliases:
            raise ModelStoreError(f"model {model!r} has no alias {alias!r} to roll back")
        history = self._history(model, alias)
        if not history:
            raise ModelStoreError(f"alias {alias!r} of model {model!r} has never moved: nothing to roll back to")
        version = history.pop()
        target = self.version(model, version)
        self._call(lambda: self.client.set_registered_model_tag(model, HISTORY_TAG + alias, json.dumps(history)),
                   model)
        self._call(lambda: self.client.set_registered_model_alias(model, alias, version), model)
        return target

    def _history(self, model: str, alias: str) -> list[str]:
        registered = self._call(lambda: self.client.get_registered_model(model), model)
        raw = dict(registered.tags or {}).get(HISTORY_TAG + alias, "[]")
        try:
            history = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelStoreError(f"tag {HISTORY_TAG + alias} of model {model!r} is not JSON: {exc}") from exc
        return [str(v) for v in history]

    def _no_model(self, model: str) -> ModelStoreError:
        return ModelStoreError(f"no model {model!r} in the MLflow registry at {self.tracking_uri} "
                               f"(models: {', '.join(self.models()) or 'none'})")

    def _call(self, call: Any, model: str | None = None, version: str | None = None) -> Any:
        """Run a client call; MLflow's errors become ModelStoreError (not found) or ModelStoreUnavailableError."""
        from mlflow.exceptions import MlflowException, RestException

        try:
            return call()
        except RestException as exc:
            code = exc.error_code
            if code == "RESOURCE_DOES_NOT_EXIST":
                if version is not None and model is not None:
                    raise ModelStoreError(f"model {model!r} has no version {version!r} in the MLflow registry at "
                                          f"{self.tracking_uri}") from exc
                if model is not None:
                    raise self._no_model(model) from exc
            if code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
                raise ModelStoreUnavailableError(f"MLflow registry at {self.tracking_uri}: {exc}") from exc
            raise ModelStoreError(f"MLflow registry at {self.tracking_uri}: {exc}") from exc
        except MlflowException as exc:
            first_line = str(exc).splitlines()[0][:300]
            if exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):  # no answer: refused, timed out
                raise ModelStoreUnavailableError(f"MLflow registry at {self.tracking_uri} does not answer: "
                                                 f"{first_line}") from exc
            raise ModelStoreError(f"MLflow registry at {self.tracking_uri}: {first_line}") from exc
        except OSError as exc:
            raise ModelStoreUnavailableError(f"MLflow registry at {self.tracking_uri}: {exc}") from exc


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
