"""Type aliases shared across the stream package."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["TopicPartition", "Offsets"]

# A partition of a topic, as (topic, partition): hashable, cheap, and not librdkafka's class of the same name.
TopicPartition: TypeAlias = tuple[str, int]
# Per partition, the next offset to read (the last offset consumed + 1): what a commit stores.
Offsets: TypeAlias = dict[TopicPartition, int]
