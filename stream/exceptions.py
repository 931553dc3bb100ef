"""Errors raised by the stream package.

StreamError
 +-- ConfigError              the configuration is invalid (exit code 2 at start-up)
 +-- RecordError              one input record is bad; it goes to the dead-letter topic
 |    +-- MalformedRecordError     not decodable: not Avro, wrong magic byte, truncated
 |    +-- UnknownSchemaError       the Schema Registry has no schema with the record's id
 |    +-- SchemaMismatchError      the writer schema does not resolve to the reader schema
 |    +-- InvalidRecordError       decoded, but a key, time or value is missing or invalid
 +-- SchemaRegistryUnavailableError  the registry cannot be reached (fatal: nothing is committed)
 +-- DeliveryError            the broker did not acknowledge an output (fatal: nothing is committed)
 +-- KafkaFatalError          librdkafka reported a fatal error
"""

from __future__ import annotations

__all__ = [
    "StreamError",
    "ConfigError",
    "RecordError",
    "MalformedRecordError",
    "UnknownSchemaError",
    "SchemaMismatchError",
    "InvalidRecordError",
    "SchemaRegistryUnavailableError",
    "DeliveryError",
    "KafkaFatalError",
]


class StreamError(Exception):
    """Root of every error raised by ``stream``."""


class ConfigError(StreamError):
    """The configuration file or an environment override is invalid."""


class RecordError(StreamError):
    """One input record cannot be scored; it is dead-lettered with this error."""

    stage = "process"


class MalformedRecordError(RecordError):
    """The bytes are not a record of the expected wire format."""

    stage = "decode"


class UnknownSchemaError(RecordError):
    """The record names a schema id the Schema Registry does not know."""

    stage = "decode"


class SchemaMismatchError(RecordError):
    """The writer schema cannot be resolved to the reader schema."""

    stage = "decode"


class InvalidRecordError(RecordError):
    """The record decoded but its key, event time or a feature field is unusable."""

    stage = "validate"


class SchemaRegistryUnavailableError(StreamError):
    """The Schema Registry did not answer after retries."""


class DeliveryError(StreamError):
    """An output was not acknowledged by the broker."""


class KafkaFatalError(StreamError):
    """librdkafka reported an error the client cannot recover from."""
