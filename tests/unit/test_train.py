"""`streamscore train` from each data source: the simulator, river's SP500Stocks, an Avro file."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import parse_schema

from models import ModelArtifact
from schemas import load_schema
from stream.cli import main
from stream.config import load_config
from stream.exceptions import ConfigError
from stream.tools.generators import sensor_events
from stream.tools.train import load_training_events, train_from_config

ROOT = Path(__file__).resolve().parents[2]


def test_river_sp500_source_trains_the_market_example(tmp_path: Path) -> None:
    config = load_config(ROOT / "examples" / "market.toml", {})
    records, labels = load_training_events(config)
    assert len(records) == 1256 * 10 and set(labels) == {0, 1}
    artifact = train_from_config(config, tmp_path / "market")
    manifest = json.loads((tmp_path / "market" / "manifest.json").read_text())
    assert manifest["training"]["source"] == "river" and manifest["training"]["events"] == 12_560
    assert ModelArtifact.load(tmp_path / "market", config.features).name == artifact.name == "market-direction"


def test_avro_file_source_with_a_label_field(tmp_path: Path) -> None:
    schema = load_schema("sensor_reading")
    labelled = {**schema, "fields": [*schema["fields"], {"name": "fault", "type": "int"}]}
    path = tmp_path / "readings.avro"
    with path.open("wb") as f:
        fastavro.writer(f, parse_schema(labelled), [{**r, "fault": y} for r, y in sensor_events(3000, 20, seed=2)])
    environ = {
        "STREAMSCORE_TRAINING__SOURCE": "avro",
        "STREAMSCORE_TRAINING__AVRO_PATH": str(path),
        "STREAMSCORE_TRAINING__LABEL_FIELD": "fault",
        "STREAMSCORE_TRAINING__PARAMS": "{ max_iter = 10 }",
    }
    config = load_config(ROOT / "examples" / "sensor.toml", environ)
    records, labels = load_training_events(config)
    expected = list(sensor_events(3000, 20, seed=2))
    assert [r["ts"] for r in records] == [r["ts"] for r, _ in expected]
    assert labels == [y for _, y in expected]
    assert train_from_config(config, tmp_path / "m").manifest["metrics"]["n_train"] == 2400

    with pytest.raises(ConfigError, match="no label field 'label'"):
        load_training_events(load_config(ROOT / "examples" / "sensor.toml", {**environ, "STREAMSCORE_TRAINING__LABEL_FIELD": "label"}))


def test_cli_train_writes_the_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMSCORE_TRAINING__EVENTS", "3000")
    monkeypatch.setenv("STREAMSCORE_TRAINING__PARAMS", "{ max_iter = 5 }")
    assert main(["train", "--config", str(ROOT / "examples" / "sensor.toml"), "--out", str(tmp_path / "m")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "sensor-fault" and summary["metrics"]["n_test"] == 600
    assert (tmp_path / "m" / "model.skops").is_file() and not (tmp_path / "m" / "model.joblib").exists()


def test_train_if_needed_keeps_a_matching_model_and_replaces_a_stale_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMSCORE_TRAINING__EVENTS", "2000")
    monkeypatch.setenv("STREAMSCORE_TRAINING__PARAMS", "{ max_iter = 5 }")
    args = ["train", "--config", str(ROOT / "examples" / "sensor.toml"), "--out", str(tmp_path / "m"), "--if-needed"]
    assert main(args) == 0
    first = (tmp_path / "m" / "manifest.json").read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True
    assert (tmp_path / "m" / "manifest.json").read_text() == first
    manifest = json.loads(first)
    manifest["features"] = manifest["features"][1:]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    assert main(args) == 0
    assert "up_to_date" not in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["features"] == json.loads(first)["features"]
