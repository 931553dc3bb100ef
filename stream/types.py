"""Type aliases shared across the stream package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

__all__ = ["Headers", "InputMessage", "MessageHeaders", "Offsets", "TopicPartition"]

# A partition of a topic, as (topic, partition): hashable, cheap, and not librdkafka's class of the same name.
TopicPartition: TypeAlias = tuple[str, int]
# Per partition, the next offset to read (the last offset consumed + 1): what a commit stores.
Offsets: TypeAlias = dict[TopicPartition, int]
# Record headers as the producer takes them, in order (names may repeat).
Headers: TypeAlias = list[tuple[str, str | bytes | None]]
# Record headers as librdkafka may hand them over: a list, or a dict when names are unique.
MessageHeaders: TypeAlias = Headers | dict[str, str | bytes | None]


class InputMessage(Protocol):
    """What the service reads of a consumed message (confluent_kafka.Message has all of it)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> MessageHeaders | None: ...


@dataclass(frozen=True)
class Rejected:
    """An output the producer or the broker refused for good, because of the record itself."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str
