"""The local model store: immutable versions, aliases that move atomically, rollback, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models import LocalModelStore, ModelArtifact, ModelStoreError
from stream.cli import main


def test_versions_are_immutable_copies_and_aliases_move_and_roll_back(small_model: ModelArtifact,
                                                                      tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    first = store.register("fault", small_model.path)
    second = store.register("fault", small_model.path)
    assert [v.version for v in store.versions("fault")] == ["1", "2"]
    assert first.manifest["name"] == "fault" and second.manifest["version"] == "2"
    assert first.manifest["sha256"] == small_model.manifest["sha256"]
    with pytest.raises(ModelStoreError, match="already has a version '2': versions are immutable"):
        store.register("fault", small_model.path, version="2")

    store.set_alias("fault", "champion", "1")
    store.set_alias("fault", "challenger", "2")
    assert store.promote("fault").version == "2"
    assert store.aliases("fault") == {"champion": "2", "challenger": "2"}
    assert store.rollback("fault").version == "1"
    assert store.resolve("fault", "champion").version == "1"
    with pytest.raises(ModelStoreError, match="has never moved"):
        store.rollback("fault")
    # a loaded version is the artifact it was registered from
    loaded = ModelArtifact.load(store.resolve("fault", "challenger").path)
    assert loaded.version == "2" and loaded.name == "fault"


def test_unknown_names_and_broken_folders_are_clear_errors(small_model: ModelArtifact, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    with pytest.raises(ModelStoreError, match=r"no model 'absent' in the store .* \(models: none\)"):
        store.versions("absent")
    store.register("fault", small_model.path)
    with pytest.raises(ModelStoreError, match=r"no version '9' \(versions: 1\)"):
        store.set_alias("fault", "champion", "9")
    with pytest.raises(ModelStoreError, match=r"no alias 'champion' \(aliases: none\)"):
        store.resolve("fault", "champion")
    # an alias naming a version that is gone
    store.set_alias("fault", "champion", "1")
    shutil.rmtree(tmp_path / "store" / "fault" / "1")
    with pytest.raises(ModelStoreError, match="names version '1', which the store does not hold"):
        store.resolve("fault", "champion")
    # a half-written version (left by a crash mid-copy) is never listed
    (tmp_path / "store" / "fault" / ".partial-abc").mkdir()
    assert store.versions("fault") == []
    # a changed artifact is refused
    changed = tmp_path / "changed"
    shutil.copytree(small_model.path, changed)
    with (changed / small_model.manifest["artifact"]).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelStoreError, match="refusing to register a changed artifact"):
        store.register("fault", changed)
    with pytest.raises(ModelStoreError, match="must be letters, digits"):
        store.register("../escape", small_model.path)


def test_cli_models_commands(small_model: ModelArtifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    assert main(["models", "--store", store, "register", "fault", str(small_model.path)]) == 0
    assert main(["models", "--store", store, "register", "fault", str(small_model.path)]) == 0
    assert main(["models", "--store", store, "alias", "fault", "champion", "1"]) == 0
    assert main(["models", "--store", store, "alias", "fault", "challenger", "2"]) == 0
    assert main(["models", "--store", store, "promote", "fault"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["aliases"] == {
        "champion": "2", "challenger": "2"}
    assert main(["models", "--store", store, "rollback", "fault"]) == 0
    assert main(["models", "--store", store, "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    assert [(r[0], r[1], r[3]) for r in rows] == [("fault", "1", "champion"), ("fault", "2", "challenger")]
    assert main(["models", "--store", store, "alias", "fault", "champion", "7"]) == 2
    assert "no version '7'" in capsys.readouterr().err
