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
 |    |    +-- OutOfRangeError     a value is outside its validation.ranges entry
 |    |    +-- EventTimeError      the event time is outside the window validation allows
 |    |    +-- KeyTooLongError     the key is longer than validation.max_key_bytes
 |    +-- OutputRejectedError      an output of the record is too large or cannot be encoded
 |         +-- OutputRefusedError  the producer or the broker refused an output of the record
 +-- SchemaRegistryUnavailableError  the registry cannot be reached (the batch is paused and retried)
 +-- BrokerUnreachableError   no broker answered at start-up within kafka.connect_timeout_s
 +-- DeliveryError            the broker did not acknowledge an output (fatal: nothing is committed)
 +-- KafkaFatalError          librdkafka reported a fatal error
 +-- StateRestoreError        window state could not be restored from the changelog
 +-- StateIntegrityError      a detector record in the changelog is unsigned, wrongly signed or malformed
"""

from __future__ import annotations

__all__ = [
    "BrokerUnreachableError",
    "ConfigError",
    "DeliveryError",
    "EventTimeError",
    "InvalidRecordError",
    "KafkaFatalError",
    "KeyTooLongError",
    "MalformedRecordError",
    "OutOfRangeError",
    "OutputRefusedError",
    "OutputRejectedError",
    "RecordError",
    "RecordTooLargeError",
    "SchemaMismatchError",
    "SchemaRegistryUnavailableError",
    "SchemaUnavailableError",
    "StateIntegrityError",
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


class EventTimeError(InvalidRecordError):
    """The event time is too far ahead of the clock, too old, or beyond what a timestamp can hold."""


class KeyTooLongError(InvalidRecordError):
    """The key field's value is longer than validation.max_key_bytes."""


class OutputRejectedError(RecordError):
    """An output of the record cannot be delivered: too large, not encodable, or refused by the broker."""

    stage = "produce"


class OutputRefusedError(OutputRejectedError):
    """The producer or the broker refused an output of the record for good (its dead letter goes out bare)."""


class RecordTooLargeError(RecordError):
    """The message value is larger than validation.max_record_bytes."""

    stage = "validate"


class SchemaUnavailableError(RecordError):
    """The record's writer schema could not be fetched (processing.registry_unavailable = "dead_letter")."""

    stage = "decode"


class SchemaRegistryUnavailableError(StreamError):
    """The Schema Registry did not answer after retries."""


class BrokerUnreachableError(StreamError):
    """No broker of kafka.bootstrap_servers answered at start-up within kafka.connect_timeout_s."""


class DeliveryError(StreamError):
    """An output was not acknowledged by the broker."""


class KafkaFatalError(StreamError):
    """librdkafka reported an error the client cannot recover from."""


class StateRestoreError(StreamError):
    """Window state could not be restored from the changelog (unreadable, too slow, or of another shape)."""


class StateIntegrityError(StreamError):
    """A drift-detector record in the state changelog is unsigned, wrongly signed or malformed: it is not loaded."""
