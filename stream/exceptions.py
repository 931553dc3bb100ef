"""Errors raised by the stream package.

StreamError
 +-- ConfigError              the configuration is invalid (exit code 2 at start-up)
 +-- RecordError              one input record is bad; it goes to the dead-letter topic
 |    +-- MalformedRecordError     not decodable: not Avro, wrong magic byte, truncated
 |    +-- UnknownSchemaError       the Schema Registry has no schema with the record's id
 |    +-- SchemaMismatchError      the writer schema does not resolve to the reader schema
 |    +-- SchemaUnavailableError   the registry is unreachable and the policy is to dead-letter
 |    +-- RecordTooLargeError      the value is over validation.max_record_bytes
 |    +-- InvalidRecordError       decoded, but a key, time or value is missing or invalid
 |         +-- OutOfRangeError     a value is outside its validation.ranges entry
 +-- SchemaRegistryUnavailableError  the registry cannot be reached (the batch is paused and retried)
 +-- DeliveryError            the broker did not acknowledge an output (fatal: nothing is committed)
 +-- KafkaFatalError          librdkafka reported a fatal error
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "InvalidRecordError",
    "KafkaFatalError",
    "MalformedRecordError",
    "OutOfRangeError",
    "RecordError",
    "RecordTooLargeError",
    "SchemaMismatchError",
    "SchemaRegistryUnavailableError",
    "SchemaUnavailableError",
    "StateRestoreError",
    "StreamError",
    "UnknownSchemaError",
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


class OutOfRangeError(InvalidRecordError):
    """A feature field lies outside its configured range (validation.ranges)."""


class RecordTooLargeError(RecordError):
    """The message value is larger than validation.max_record_bytes."""

    stage = "validate"


class SchemaUnavailableError(RecordError):
    """The record's writer schema could not be fetched (processing.registry_unavailable = "dead_letter")."""

    stage = "decode"


class SchemaRegistryUnavailableError(StreamError):
    """The Schema Registry did not answer after retries."""


class DeliveryError(StreamError):
    """An output was not acknowledged by the broker."""


class KafkaFatalError(StreamError):
    """librdkafka reported an error the client cannot recover from."""


class StateRestoreError(StreamError):
    """Window state could not be restored from the changelog (unreadable, too slow, or of another shape)."""
