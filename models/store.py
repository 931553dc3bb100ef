"""A model store on a local folder: named, immutable versions and movable aliases.

Layout: ``<root>/<model>/<version>/`` holds an artifact as ``ModelArtifact``
writes it (``model.skops`` or ``model.joblib``, and ``manifest.json`` with its sha256), copied
in once and never changed; ``<root>/<model>/aliases.json`` maps each alias
(``champion``, ``challenger``) to a version, with the versions it pointed to
before (for ``rollback``). The aliases file is written to a temporary file
and moved over the old one, so a reader sees the old mapping or the new one,
never half of either. A version folder is written under a temporary name
and renamed when complete, so a half-written version is never listed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.artifact import MANIFEST_FILE, file_sha256, model_file
from models.exceptions import ModelLoadError, ModelStoreError, UnknownAliasError

__all__ = ["ALIASES_FILE", "LocalModelStore", "ModelStore", "StoredVersion", "check_name", "checked_source", "open_store", "read_manifest"]

ALIASES_FILE = "aliases.json"
# Names of models, versions and aliases: safe as folder names everywhere.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A folder being written; never listed as a version.
_PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class StoredVersion:
    """One immutable version of a model in the store."""

    model: str
    version: str
    path: Path
    manifest: dict[str, Any]


class ModelStore(Protocol):
    """What every store offers: the local folder and the MLflow registry."""

    root: Path

    def models(self) -> list[str]: ...
    def versions(self, model: str) -> list[StoredVersion]: ...
    def version(self, model: str, version: str) -> StoredVersion: ...
    def register(self, model: str, source: Path | str, version: str | None = None) -> StoredVersion: ...
    def aliases(self, model: str) -> dict[str, str]: ...
    def resolve(self, model: str, alias: str) -> StoredVersion: ...
    def set_alias(self, model: str, alias: str, version: str) -> StoredVersion: ...
    def promote(self, model: str, source: str = "challenger", target: str = "champion") -> StoredVersion: ...
    def rollback(self, model: str, alias: str = "champion") -> StoredVersion: ...


class LocalModelStore:
    """Versions and aliases of models under one folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def models(self) -> list[str]:
        """The model names in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def versions(self, model: str) -> list[StoredVersion]:
        """Every complete version of ``model``, oldest first (by number where versions are numbers)."""
        folder = self._model_folder(model)
        found = [self._read(model, p) for p in folder.iterdir()
                 if p.is_dir() and not p.name.startswith(_PARTIAL_PREFIX)]
        return sorted(found, key=lambda v: _order(v.version))

    def version(self, model: str, version: str) -> StoredVersion:
        """One version; ModelStoreError naming what exists when it does not."""
        check_name(version, "version")
        path = self._model_folder(model) / version
        if not path.is_dir():
            known = ", ".join(v.version for v in self.versions(model)) or "none"
            raise ModelStoreError(f"model {model!r} has no version {version!r} (versions: {known})")
        return self._read(model, path)

    def register(self, model: str, source: Path | str, version: str | None = None) -> StoredVersion:
        """Copy the artifact in ``source`` into the store as a new version (the next number by default).

        The artifact's sha256 is checked first, and the manifest's name and
        version are set to the store's, so that predictions name what the store calls it.
        """
        check_name(model, "model")
        source = Path(source)
        manifest, model_name = checked_source(source)
        folder = self.root / model
        folder.mkdir(parents=True, exist_ok=True)
        if version is None:
            numbers = [int(v.version) for v in self.versions(model) if v.version.isdigit()]
            version = str(max(numbers, default=0) + 1)
        check_name(version, "version")
        if (folder / version).exists():
            raise ModelStoreError(f"model {model!r} already has a version {version!r}: versions are immutable")
        partial = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=folder))
        try:
            shutil.copy2(source / model_name, partial / model_name)
            (partial / MANIFEST_FILE).write_text(json.dumps({**manifest, "name": model, "version": version},
                                                            indent=2, sort_keys=True) + "\n")
            os.rename(partial, folder / version)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return self.version(model, version)

    def aliases(self, model: str) -> dict[str, str]:
        """alias -> version of ``model``."""
        return {alias: entry["version"] for alias, entry in self._aliases(model).items()}

    def resolve(self, model: str, alias: str) -> StoredVersion:
        """The version ``alias`` points to; ModelStoreError naming the aliases that exist when it is unknown."""
        check_name(alias, "alias")
        entries = self._aliases(model)
        if alias not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UnknownAliasError(f"model {model!r} has no alias {alias!r} (aliases: {known})")
        version = entries[alias]["version"]
        try:
            return self.version(model, version)
        except ModelStoreError as exc:
            raise ModelStoreError(f"alias {alias!r} of model {model!r} names version {version!r}, "
                                  f"which the store does not hold") from exc

    def set_alias(self, model: str, alias: str, version: str) -> StoredVersion:
        """Point ``alias`` at ``version`` (which must exist); the version it named before is remembered."""
        check_name(alias, "alias")
        target = self.version(model, version)
        entries = self._aliases(model)
        entry = entries.get(alias, {"version": None, "previous": []})
        if entry["version"] != version:
            previous = [*entry["previous"], entry["version"]] if entry["version"] is not None else entry["previous"]
            entries[alias] = {"version": version, "previous": previous}
            self._write_aliases(model, entries)
        return target

    def promote(self, model: str, source: str = "challenger", target: str = "champion") -> StoredVersion:
        """Point ``target`` at the version ``source`` names."""
        return self.set_alias(model, target, self.resolve(model, source).version)

    def rollback(self, model: str, alias: str = "champion") -> StoredVersion:
        """Point ``alias`` back at the version it named before its last move."""
        entries = self._aliases(model)
        entry = entries.get(alias)
        if entry is None:
            raise ModelStoreError(f"model {model!r} has no alias {alias!r} to roll back")
        if not entry["previous"]:
            raise ModelStoreError(f"alias {alias!r} of model {model!r} has never moved: nothing to roll back to")
        version = entry["previous"][-1]
        self.version(model, version)  # it must still exist
        entries[alias] = {"version": version, "previous": entry["previous"][:-1]}
        self._write_aliases(model, entries)
        return self.version(model, version)

    def _model_folder(self, model: str) -> Path:
        check_name(model, "model")
        folder = self.root / model
        if not folder.is_dir():
            raise ModelStoreError(f"no model {model!r} in the store at {self.root} "
                                  f"(models: {', '.join(self.models()) or 'none'})")
        return folder

    def _read(self, model: str, path: Path) -> StoredVersion:
        return StoredVersion(model, path.name, path, read_manifest(path))

    def _aliases(self, model: str) -> dict[str, dict[str, Any]]:
        path = self._model_folder(model) / ALIASES_FILE
        return _json_object(path) if path.exists() else {}

    def _write_aliases(self, model: str, entries: dict[str, dict[str, Any]]) -> None:
        folder = self._model_folder(model)
        fd, temp = tempfile.mkstemp(prefix=".aliases-", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, folder / ALIASES_FILE)


def open_store(location: str | Path) -> ModelStore:
    """The store at ``location``: an MLflow registry for an ``http(s)://`` tracking URI, else a local folder."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        from models.mlflow_store import MlflowModelStore

        return MlflowModelStore(text)
    return LocalModelStore(location)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the artifact in ``folder``; ModelStoreError unless it has a manifest and its model file."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelStoreError(f"{folder} is not a model artifact: it has no {MANIFEST_FILE}")
    manifest = _json_object(path)
    try:
        name = model_file(manifest)
    except ModelLoadError as exc:
        raise ModelStoreError(f"{path}: {exc}") from exc
    if not (folder / name).is_file():
        raise ModelStoreError(f"{folder} is not a model artifact: its manifest names {name}, which is missing")
    return manifest


def checked_source(source: Path) -> tuple[dict[str, Any], str]:
    """An artifact about to be registered: its manifest and model file name, after checking the file's sha256."""
    manifest = read_manifest(source)
    name = model_file(manifest)
    actual = file_sha256(source / name)
    if manifest.get("sha256") != actual:
        raise ModelStoreError(f"{source}: the sha256 of {name} is {actual}, the manifest says "
                              f"{manifest.get('sha256')}: refusing to register a changed artifact")
    return manifest, name


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ModelStoreError if it cannot be read or is not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelStoreError(f"{path} is not a JSON object")
    return data


def check_name(name: str, what: str) -> None:
    """ModelStoreError unless ``name`` is safe as a folder name everywhere."""
    if not _NAME.match(name):
        raise ModelStoreError(f"{what} name {name!r} must be letters, digits, '.', '_' or '-' (at most 128)")


def _order(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)
