"""The service configuration: one typed, frozen object from a TOML file plus environment overrides."""

from stream.config.loader import ENV_PREFIX, default_signals, load_config
from stream.config.sections import (
    BatchConfig,
    CodecConfig,
    DriftConfig,
    KafkaConfig,
    LabelsConfig,
    MetricsConfig,
    ModelConfig,
    ProcessingConfig,
    ServiceConfig,
    SimulatorConfig,
    StateConfig,
    TrainingConfig,
    ValidationConfig,
    read_schema,
    redact,
    redact_url,
)

__all__ = [
    "ENV_PREFIX",
    "BatchConfig",
    "CodecConfig",
    "DriftConfig",
    "KafkaConfig",
    "LabelsConfig",
    "MetricsConfig",
    "ModelConfig",
    "ProcessingConfig",
    "ServiceConfig",
    "SimulatorConfig",
    "StateConfig",
    "TrainingConfig",
    "ValidationConfig",
    "default_signals",
    "load_config",
    "read_schema",
    "redact",
    "redact_url",
]
