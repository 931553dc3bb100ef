"""Loading the configuration: a TOML file plus environment overrides, merged, typed and checked.

Precedence, lowest first: defaults, the TOML file, ``KAFKA_BOOTSTRAP_SERVERS``
(the variable ``scripts/local-kafka`` prints), ``STREAMSCORE_<SECTION>__<KEY>``
variables, then the flags of ``streamscore run`` (``--input-topic``,
``--output-topic``, ``--group``, ``--model``). Variables look like ``STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS`` or
``STREAMSCORE_BATCH__MAX_SIZE=500``. Values from the environment are read as
TOML values when they parse as one (numbers, booleans, arrays), else as
strings. librdkafka settings go in the ``kafka.consumer`` / ``kafka.producer``
tables with their dotted names; from the environment, write the dots as
underscores: ``STREAMSCORE_KAFKA__PRODUCER__SASL_PASSWORD`` sets
``sasl.password``. Nothing else in streamscore reads ``os.environ``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from features import FeatureSpec, FeatureSpecError
from models.drift import DriftConfigError, SignalSpec
from stream.config.checks import validate
from stream.config.sections import SECTIONS, DriftConfig, ServiceConfig
from stream.exceptions import ConfigError

__all__ = ["ENV_PREFIX", "default_signals", "load_config"]

ENV_PREFIX = "STREAMSCORE_"

# Sections the environment can override ([features] is structural: set it in the file).
_ENVSECTIONS = set(SECTIONS) | {"drift"}
_PASSTHROUGH = {("kafka", "consumer"), ("kafka", "producer"), ("codec", "schema_registry"), ("training", "params")}
_FEATURE_KEYS = {"fields", "windows", "aggregates", "ewma_alpha"}
_WINDOW_KEYS = {"kind", "size", "seconds", "aggregates", "ewma_alpha"}
_DRIFT_KEYS = {"enabled", "topic", "schema", "signals"}
_SIGNAL_KEYS = {"source", "name", "detector", "params", "sample_every"}


def load_config(
    path: str | Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> ServiceConfig:
    """Read, merge and validate the configuration; raise ConfigError with an actionable message.

    ``overrides`` (section -> key -> value, from command-line flags) win over
    the file and the environment.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    origins = _apply_environment(data, dict(environ or {}))
    for section, values in (overrides or {}).items():
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {source} must be a table")
        table.update(values)
        origins.update({f"{section}.{key}": "the command line" for key in values})
    config = _build(data, source, origins)
    validate(config)
    return config


def _apply_environment(data: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """Merge the environment's overrides into ``data``; return where each overridden key came from."""
    origins: dict[str, str] = {}
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        data.setdefault("kafka", {})["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        origins["kafka.bootstrap_servers"] = "environment variable KAFKA_BOOTSTRAP_SERVERS"
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) == 3 and tuple(parts[:2]) in _PASSTHROUGH:
            parts[2] = parts[2].replace("_", ".")
        if len(parts) == 1 and parts[0] == "log_level":
            data["log_level"] = raw
            origins["log_level"] = f"environment variable {name}"
            continue
        if len(parts) < 2 or parts[0] not in _ENVSECTIONS:
            raise ConfigError(
                f"environment variable {name} does not name a setting; "
                f"use {ENV_PREFIX}<SECTION>__<KEY> with a section of {sorted(_ENVSECTIONS)}"
            )
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} overrides a value that is not a table")
        node[parts[-1]] = _parse_env_value(raw)
        origins[".".join(parts[:2])] = f"environment variable {name}"
    return origins


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(data: dict[str, Any], source: str, origins: Mapping[str, str]) -> ServiceConfig:
    special = {"features", "drift", "log_level"}
    unknown = set(data) - set(SECTIONS) - special
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r} in {source}; top-level keys are {sorted(set(SECTIONS) | special)}"
        )
    sections = {name: _build_section(name, cls, data.get(name, {}), source, origins) for name, cls in SECTIONS.items()}
    features = data.get("features")
    if features is None:
        raise ConfigError(f"{source} has no [features] table: declare fields and windows")
    log_level = data.get("log_level", "INFO")
    if not isinstance(log_level, str) or log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    features_spec = _build_features(features, source)
    return ServiceConfig(
        features=features_spec,
        drift=_build_drift(data.get("drift", {}), features_spec, source, origins),
        log_level=log_level.upper(),
        source=source,
        **sections,
    )


def _build_section(name: str, cls: type, table: Any, source: str, origins: Mapping[str, str]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] in {source} must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        origin = origins.get(where)
        said = f"from {origin}" if origin else f"in {source}"
        if key not in fields:
            raise ConfigError(f"unknown key '{where}' {said}; [{name}] takes {sorted(fields)}")
        try:
            values[key] = _coerce(where, hints[key], value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} ({said})") from None
    return cls(**values)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if (value is None or value == "") and type(None) in args:
            return None  # TOML has no null: an empty value unsets an optional key (from the environment too)
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(where, inner, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif origin in (collections.abc.Mapping, dict):
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    else:  # pragma: no cover - a field type this loader does not know
        raise TypeError(f"config field {where} has unsupported type {hint}")
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be {expected}, got {json.dumps(value, default=str)}")


def _build_features(table: Any, source: str) -> FeatureSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"[features] in {source} must be a table")
    _check_keys(table, "features", _FEATURE_KEYS, source, "[features]")
    _check_tables(table.get("windows", []), "features.windows", _WINDOW_KEYS, source, "a window")
    try:
        return FeatureSpec.from_dict(table)
    except FeatureSpecError as exc:
        raise ConfigError(f"[features] in {source}: {exc}") from exc


def _check_keys(table: dict[str, Any], where: str, allowed: set[str], source: str, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key '{where}.{key}' in {source}; {what} takes {sorted(allowed)}")


def _check_tables(items: Any, where: str, allowed: set[str], source: str, what: str) -> None:
    """Every item of an array of tables is a table with known keys only."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{i}] in {source} must be a table")
        _check_keys(item, f"{where}[{i}]", allowed, source, what)


def _build_drift(table: Any, spec: FeatureSpec, source: str, origins: Mapping[str, str]) -> DriftConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"[drift] in {source} must be a table")
    _check_keys(table, "drift", _DRIFT_KEYS, source, "[drift]")
    base = _build_section("drift", DriftConfig, {k: v for k, v in table.items() if k != "signals"}, source, origins)
    raw_signals = table.get("signals")
    if raw_signals is None:
        signals = default_signals(spec)
    else:
        if isinstance(raw_signals, dict):  # from the environment: one table per signal index
            raw_signals = [raw_signals[k] for k in sorted(raw_signals, key=int)]
        _check_tables(raw_signals, "drift.signals", _SIGNAL_KEYS, source, "a signal")
        signals_list = []
        for i, item in enumerate(raw_signals):
            try:
                fields: dict[str, Any] = {k: (dict(v) if k == "params" else v) for k, v in item.items()}
                signals_list.append(SignalSpec(**fields))
            except (DriftConfigError, TypeError) as exc:
                raise ConfigError(f"drift.signals[{i}] in {source}: {exc}") from exc
        signals = tuple(signals_list)
    for s in signals:
        if s.source == "input" and s.name not in spec.fields:
            raise ConfigError(f"drift signal input:{s.name} is not one of features.fields {list(spec.fields)}")
        if s.source == "feature" and s.name not in spec.feature_names:
            raise ConfigError(f"drift signal feature:{s.name} is not a feature of the spec")
    return dataclasses.replace(base, signals=signals)


def default_signals(spec: FeatureSpec) -> tuple[SignalSpec, ...]:
    """What is watched when [drift] lists no signals: the score, every feature field, and (once
    labels arrive) the 0/1 error, each with ADWIN. DDM is not the default for errors: it raises
    false alarms while its error-rate estimate settles, and more the lower the error rate."""
    return (
        SignalSpec("score", detector="adwin"),
        *(SignalSpec("input", name, detector="adwin") for name in spec.fields),
        SignalSpec("error", detector="adwin"),
    )


