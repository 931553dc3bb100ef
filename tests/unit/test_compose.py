"""docker-compose.yml parses, and the scorer it defines gets a configuration that loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_defined() -> None:
    assert set(compose()["services"]) == {"kafka", "schema-registry", "topics", "scorer", "simulator"}


def test_scorer_gets_a_valid_config_pointing_at_the_compose_broker_and_registry() -> None:
    services = compose()["services"]
    scorer = services["scorer"]
    assert scorer["build"] == "."
    command = scorer["command"]
    assert command[0] == "run"
    config_path = command[command.index("--config") + 1]
    env = {k: str(v) for k, v in scorer["environment"].items()}
    config = load_config(ROOT / config_path, env)  # raises ConfigError if the settings do not hold

    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{config.kafka.bootstrap_servers}" in advertised
    assert config.codec.format == "confluent"
    assert config.codec.schema_registry_url.startswith("http://schema-registry:")
    registry_port = config.codec.schema_registry_url.rsplit(":", 1)[1]
    assert registry_port in services["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"]
    assert {"kafka", "schema-registry"} <= set(scorer["depends_on"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--out {config.model.path}" in dockerfile, "the image must hold the model the scorer loads"


def test_simulator_feeds_the_scorers_input_topic() -> None:
    services = compose()["services"]
    sim = services["simulator"]
    config = load_config(ROOT / "examples/sensor.toml", {k: str(v) for k, v in sim["environment"].items()})
    command = sim["command"]
    assert command[0] == "simulate"
    assert command[command.index("--topic") + 1] in config.kafka.input_topics
