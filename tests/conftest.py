"""Shared fixtures: the Kafka broker and the Schema Registry for integration tests, and a small trained model.

The broker is, in order: the cluster named by KAFKA_BOOTSTRAP_SERVERS; a
testcontainers Kafka where a Docker engine answers; else the local broker of
scripts/local-kafka, started here and stopped at the end of the session.
With CI=true a missing broker fails the run instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import ModelArtifact
from stream.config import ServiceConfig, load_config
from stream.tools.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
SENSOR_CONFIG = ROOT / "examples" / "sensor.toml"


def _docker_kafka() -> Iterator[str] | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # no engine here: fall back to the local broker
        return None
    from testcontainers.kafka import KafkaContainer

    def run() -> Iterator[str]:
        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()

    return run()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real Kafka broker."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    container = _docker_kafka()
    if container is not None:
        yield from container
        return
    script = ROOT / "scripts" / "local-kafka"
    started = subprocess.run([str(script), "status"], capture_output=True).returncode != 0
    proc = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if proc.returncode != 0:
        message = f"no Kafka broker: scripts/local-kafka start failed:\n{proc.stderr[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    bootstrap = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    try:
        yield bootstrap
    finally:
        if started:
            subprocess.run([str(script), "stop"], capture_output=True)


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> ServiceConfig:
    """The sensor example's features with a quick training set-up."""
    model_dir = tmp_path_factory.mktemp("model") / "sensor"
    return load_config(
        SENSOR_CONFIG,
        {
            "STREAMSCORE_TRAINING__EVENTS": "6000",
            "STREAMSCORE_TRAINING__KEYS": "40",
            "STREAMSCORE_TRAINING__PARAMS": "{ max_iter = 20 }",
            "STREAMSCORE_MODEL__PATH": str(model_dir),
        },
    )


@pytest.fixture(scope="session")
def small_model(small_config: ServiceConfig) -> ModelArtifact:
    """A 20-tree HistGradientBoosting fault model on the sensor example's features."""
    return train_from_config(small_config, Path(small_config.model.path))


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The URL of a real Confluent-compatible Schema Registry: SCHEMA_REGISTRY_URL, else scripts/local-registry's."""
    if os.environ.get("SCHEMA_REGISTRY_URL"):
        yield os.environ["SCHEMA_REGISTRY_URL"]
        return
    script = ROOT / "scripts" / "local-registry"
    started = subprocess.run([str(script), "status"], capture_output=True).returncode != 0
    proc = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if proc.returncode != 0:
        message = f"no Schema Registry: scripts/local-registry start failed:\n{proc.stderr[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    url = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    try:
        yield url
    finally:
        if started:
            subprocess.run([str(script), "stop"], capture_output=True)
