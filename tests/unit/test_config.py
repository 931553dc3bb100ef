"""Configuration: file plus environment, strict keys, clear errors, redacted secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli import main
from stream.config import load_config
from stream.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SENSOR = ROOT / "examples" / "sensor.toml"


@pytest.mark.parametrize("name", ["sensor.toml", "market.toml"])
def test_examples_load(name: str) -> None:
    config = load_config(ROOT / "examples" / name, {})
    assert config.kafka.input_topics
    assert config.features.n_features == len(config.features.feature_names) > 0


def test_environment_overrides_with_types() -> None:
    config = load_config(SENSOR, {
        "KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092",
        "STREAMSCORE_BATCH__MAX_SIZE": "250",
        "STREAMSCORE_KAFKA__INPUT_TOPICS": '["a", "b"]',
        "STREAMSCORE_STATE__CHANGELOG": "false",
        "STREAMSCORE_KAFKA__CONSUMER__SESSION_TIMEOUT_MS": "30000",
        "STREAMSCORE_LOG_LEVEL": "debug",
        "UNRELATED": "x",
    })
    assert config.kafka.bootstrap_servers == "10.0.0.1:9092"
    assert config.batch.max_size == 250
    assert config.kafka.input_topics == ("a", "b")
    assert config.kafka.consumer == {"session.timeout.ms": 30000}
    assert config.log_level == "DEBUG"
    assert config.state.changelog is False


def test_streamscore_variable_beats_kafka_bootstrap_servers() -> None:
    config = load_config(SENSOR, {"KAFKA_BOOTSTRAP_SERVERS": "a:1", "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": "b:2"})
    assert config.kafka.bootstrap_servers == "b:2"


@pytest.mark.parametrize(
    "extra, environ, message",
    [
        ("[batch]\nmax_sise = 3\n", {}, "unknown key 'batch.max_sise'"),
        ("", {"STREAMSCORE_BATCH__MAX_SISE": "3"}, "unknown key 'batch.max_sise'"),
        ("", {"STREAMSCORE_BACTH__MAX_SIZE": "3"}, "STREAMSCORE_BACTH__MAX_SIZE does not name a setting"),
        ("[servce]\nx = 1\n", {}, "unknown key 'servce'"),
        ("", {"STREAMSCORE_BATCH__MAX_SIZE": "many"}, "batch.max_size must be int"),
        ("", {"STREAMSCORE_BATCH__MAX_SIZE": "0"}, "batch.max_size must be between"),
        ("", {"STREAMSCORE_CODEC__FORMAT": "json"}, "codec.format must be"),
        ("", {"STREAMSCORE_CODEC__FORMAT": "confluent"}, "needs codec.schema_registry_url"),
        ("", {"STREAMSCORE_CODEC__KEY_FIELD": "device"}, "codec.key_field = 'device' is not a field"),
        ("", {"STREAMSCORE_KAFKA__CONSUMER__ENABLE_AUTO_COMMIT": "true"}, "managed by streamscore"),
        ("", {"STREAMSCORE_CODEC__READER_SCHEMA": "nope"}, "no bundled schema 'nope'"),
        ("", {"STREAMSCORE_KAFKA__INPUT_TOPICS": '["a", "b"]'}, "needs exactly one input topic"),
        ("", {"STREAMSCORE_STATE__TOPIC": "sensor-predictions"}, "state.topic 'sensor-predictions' is already used"),
        ("", {"STREAMSCORE_STATE__CHECKPOINT_INTERVAL_MS": "-1"}, "state.checkpoint_interval_ms must be >= 0"),
        ("", {"STREAMSCORE_STATE__KEY_TTL_S": "-5"}, "state.key_ttl_s must be >= 0"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, extra: str, environ: dict, message: str) -> None:
    # TOML forbids a table twice, so file errors go in a fresh table of their own
    path = tmp_path / "c.toml"
    text = SENSOR.read_text()
    if extra.startswith("[batch]"):
        text = text.replace("max_wait_ms = 0 ", "max_wait_ms = 0\nmax_sise = 3\n#")
    else:
        text += "\n" + extra
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(path, environ)


def test_feature_field_must_be_numeric_in_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(SENSOR.read_text().replace('fields = ["temperature"', 'fields = ["sensor_id", "temperature"'))
    with pytest.raises(ConfigError, match="'sensor_id' has Avro type 'string'"):
        load_config(path, {})


def test_secrets_never_show_in_repr() -> None:
    config = load_config(SENSOR, {
        "STREAMSCORE_KAFKA__PRODUCER__SASL_PASSWORD": "hunter2",
        "STREAMSCORE_KAFKA__CONSUMER__SSL_KEY_PASSWORD": "s3cret",
        "STREAMSCORE_KAFKA__CONSUMER__SASL_USERNAME": "alice",
    })
    assert config.kafka.producer["sasl.password"] == "hunter2"
    text = repr(config)
    assert "hunter2" not in text and "s3cret" not in text
    assert "alice" in text


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(SENSOR.read_text().replace("max_wait_ms = 0 ", "max_wait_ms = 0\nmax_sise = 3\n#"))
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"streamscore: unknown key 'batch.max_sise' in {path}; [batch] takes ['max_size', 'max_wait_ms']"]


def test_cli_missing_model_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("STREAMSCORE_MODEL__PATH", str(tmp_path / "none"))
    assert main(["run", "--config", str(SENSOR)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_cli_invalid_toml_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[batch\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "m")]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('kind = "count"', 'kind = "count"\nsise = 3', "unknown key 'features.windows[0].sise'"),
        ('name = "temperature"\ndetector', 'name = "temperature"\ndetectr = "adwin"\ndetector',
         "unknown key 'drift.signals[0].detectr'"),
        ('[drift]\nenabled = true', '[drift]\nenabled = true\nwarmup = 3', "unknown key 'drift.warmup'"),
        ('detector = "adwin"\nparams = { delta', 'detector = "adwin"\nparams = { delt', "unknown parameter 'delt'"),
    ],
)
def test_nested_tables_name_the_unknown_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "c.toml"
    text = SENSOR.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, {})


def test_the_secure_example_loads_and_keeps_its_secrets_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from stream.kafka.sink import PredictionSink

    environ = {"STREAMSCORE_KAFKA__CONSUMER__SASL_PASSWORD": "hunter2",
               "STREAMSCORE_KAFKA__PRODUCER__SASL_PASSWORD": "hunter2",
               "STREAMSCORE_CODEC__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": "svc:s3cret"}
    config = load_config(ROOT / "examples" / "secure.toml", environ)
    assert config.kafka.producer["security.protocol"] == "SASL_SSL"
    assert config.kafka.producer["sasl.password"] == "hunter2"
    assert config.codec.schema_registry["basic.auth.user.info"] == "svc:s3cret"
    assert config.processing.guarantee == "exactly_once"
    assert "hunter2" not in repr(config) and "s3cret" not in repr(config)
    caplog.set_level(logging.DEBUG, logger="stream")
    sink = PredictionSink({"bootstrap.servers": "127.0.0.1:1", **config.kafka.producer,
                           "security.protocol": "SASL_PLAINTEXT"})
    assert "sasl.password" in caplog.text, "the producer settings were logged"
    assert "hunter2" not in caplog.text
    del sink


def test_run_flags_win_over_the_environment_and_the_file() -> None:
    from stream.cli import _overrides, _parser

    args = _parser().parse_args(["run", "--config", str(SENSOR), "--input-topic", "in-a,in-b", "--input-topic",
                                 "in-c", "--output-topic", "out", "--group", "g1", "--model", "models/m1"])
    config = load_config(SENSOR, {"STREAMSCORE_KAFKA__OUTPUT_TOPIC": "from-env", "STREAMSCORE_KAFKA__GROUP_ID": "eg",
                                  "STREAMSCORE_STATE__CHANGELOG": "false"}, _overrides(args))
    assert config.kafka.input_topics == ("in-a", "in-b", "in-c")
    assert config.kafka.output_topic == "out"
    assert config.kafka.group_id == "g1"
    assert config.model.path == "models/m1"
    file_only = load_config(SENSOR, {}, _overrides(_parser().parse_args(["run", "--config", str(SENSOR)])))
    assert file_only.kafka.output_topic == load_config(SENSOR, {}).kafka.output_topic != "out"


def test_simulator_kind_is_checked_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"simulator\.kind must be one of"):
        load_config(SENSOR, {"STREAMSCORE_SIMULATOR__KIND": "sp500"})


def test_an_environment_override_is_named_as_such_in_errors() -> None:
    with pytest.raises(ConfigError) as unknown:
        load_config(SENSOR, {"STREAMSCORE_BATCH__MAX_SIZ": "5"})
    assert str(unknown.value).startswith("unknown key 'batch.max_siz' from environment variable "
                                         "STREAMSCORE_BATCH__MAX_SIZ;")
    with pytest.raises(ConfigError) as wrong:
        load_config(SENSOR, {"STREAMSCORE_BATCH__MAX_SIZE": "lots"})
    assert str(wrong.value) == ('batch.max_size must be int, got "lots" '
                                "(from environment variable STREAMSCORE_BATCH__MAX_SIZE)")


def test_a_wrong_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SENSOR.read_text().replace("max_wait_ms = 0 ", 'max_wait_ms = "soon" #', 1))
    with pytest.raises(ConfigError) as wrong:
        load_config(bad, {})
    assert str(wrong.value) == f'batch.max_wait_ms must be int, got "soon" (in {bad})'


def test_a_ttl_within_the_bound_on_future_event_times_is_a_caution() -> None:
    from stream.config.checks import cautions

    assert cautions(load_config(SENSOR, {})) == []  # 7 days against 300 s
    assert cautions(load_config(SENSOR, {"STREAMSCORE_STATE__KEY_TTL_S": "0"})) == []  # expiry off
    (caution,) = cautions(load_config(SENSOR, {"STREAMSCORE_STATE__KEY_TTL_S": "60"}))
    assert caution.startswith("state.key_ttl_s (60 s) is not above validation.max_event_ahead_s (300 s)")
