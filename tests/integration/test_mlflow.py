"""The MLflow Model Registry as the model store, against a real ``mlflow server`` on loopback."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import ModelArtifact, ModelStoreError, UnknownAliasError
from models.store import open_store
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.cli import main
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import MlflowServer, live_feed, read_topic, service_config, unique, wait_until

if importlib.util.find_spec("mlflow") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI runs the MLflow registry tests: install the extra (make mlflow-extra)")
    pytest.skip("mlflow is not installed (make mlflow-extra)", allow_module_level=True)

PREDICTION = AvroCodec(load_schema("prediction"))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_versions_and_aliases_in_the_mlflow_registry(mlflow_server: MlflowServer, small_model: ModelArtifact,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(mlflow_server.url)
    name = unique("fault")
    first = store.register(name, small_model.path)
    second = store.register(name, small_model.path)
    assert (first.version, second.version) == ("1", "2")
    # the downloaded version is the artifact, named as the registry names it
    loaded = ModelArtifact.load(second.path)
    assert loaded.name == name and loaded.version == "2"
    assert loaded.manifest["sha256"] == small_model.manifest["sha256"]
    store.set_alias(name, "champion", "1")
    store.set_alias(name, "challenger", "2")
    assert store.promote(name).version == "2"
    assert store.aliases(name) == {"champion": "2", "challenger": "2"}
    assert store.rollback(name).version == "1"
    assert store.resolve(name, "champion").version == "1"
    with pytest.raises(ModelStoreError, match="has never moved"):
        store.rollback(name)
    with pytest.raises(UnknownAliasError, match=r"no alias 'canary' \(aliases: challenger, champion\)"):
        store.resolve(name, "canary")
    with pytest.raises(ModelStoreError, match="has no version '9'"):
        store.set_alias(name, "champion", "9")
    with pytest.raises(ModelStoreError, match=r"no model 'absent-model' in the MLflow registry"):
        store.aliases("absent-model")
    # the command line takes the tracking URI as its store
    capsys.readouterr()
    assert main(["models", "--store", mlflow_server.url, "list", name]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in listing] == ["1", "2"]
    assert listing[0].endswith("champion") and listing[1].endswith("challenger")
    assert main(["models", "--store", mlflow_server.url, "alias", name, "champion", "7"]) == 2
    assert "has no version '7'" in capsys.readouterr().err


def test_a_scorer_follows_its_mlflow_alias_and_keeps_scoring_while_the_server_is_down(
        kafka_bootstrap: str, mlflow_server: MlflowServer, small_model: ModelArtifact) -> None:
    store = open_store(mlflow_server.url)
    name = unique("fault")
    store.register(name, small_model.path)
    store.register(name, small_model.path)
    store.set_alias(name, "champion", "1")
    topic = unique("mlflow")
    events = [r for r, _ in sensor_events(16_000, 40, seed=31)]
    positions, feeder = live_feed(kafka_bootstrap, topic, events, backlog=500, partitions=2, rate=400)
    config = service_config(kafka_bootstrap, small_model.path, topic, model__store=mlflow_server.url,
                            model__name=name, model__poll_interval_s=0.5, batch__max_wait_ms=20)
    service = build_service(config)
    runner = threading.Thread(target=service.run, kwargs={"max_events": len(events), "idle_exit_seconds": 30})
    runner.start()
    try:
        wait_until(lambda: service.stats.predictions > 1000, 60, "the first predictions")
        assert service.readiness()["model_store_reachable"]
        mlflow_server.stop()
        wait_until(lambda: not service.readiness()["model_store_reachable"], 30, "readiness to see the store down")
        scored = service.stats.predictions
        wait_until(lambda: service.stats.predictions > scored + 1000, 60, "scoring to go on without the store")
        assert service.processor.model_version == "1"
        mlflow_server.start()
        wait_until(lambda: service.readiness()["model_store_reachable"], 60, "readiness to see the store back")
        open_store(mlflow_server.url).set_alias(name, "champion", "2")
        wait_until(lambda: service.processor.model_version == "2", 30, "the promotion to reach the scorer")
    finally:
        feeder.join()
        runner.join(timeout=120)
    assert not runner.is_alive()
    out = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(events))
    predictions = [PREDICTION.decode(r.value) for r in out]
    assert len({(p["source_partition"], p["source_offset"]) for p in predictions}) == len(events), "a lost event"
    assert set(positions) <= {(p["source_partition"], p["source_offset"]) for p in predictions}
    assert {p["model_version"] for p in predictions} == {"1", "2"}
