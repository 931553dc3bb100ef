"""Input read again after a restore, between a partition's checkpoint and its committed offset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stream.types import Offsets, TopicPartition

__all__ = ["Replay"]


@dataclass
class Replay:
    """Input read again after a state restore: it goes into the windows and detectors, and produces nothing.

    ``until`` is, per (topic, partition) being replayed, the first offset
    whose outputs are produced (the committed offset); ``skip`` lists keys
    whose restored state already holds their events before an offset.
    ``done`` keeps the ``until`` of partitions replayed to the end: a batch
    abandoned later must not start producing below it.
    """

    until: Offsets = field(default_factory=dict)
    skip: dict[TopicPartition, dict[str, int]] = field(default_factory=dict)
    done: Offsets = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.until)

    def delivered(self, tp: TopicPartition, first: int) -> int:
        """Where outputs resume for a partition whose batch from ``first`` was abandoned."""
        return max(first, self.until.get(tp, first), self.done.get(tp, first))

    def committable(self, next_offsets: Mapping[TopicPartition, int]) -> Offsets:
        """``next_offsets`` without the partitions still short of their ``until``."""
        until = self.until
        if not until:
            return dict(next_offsets)
        return {tp: o for tp, o in next_offsets.items() if tp not in until or o >= until[tp]}

    def advance(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Move the partitions read up to their ``until`` to ``done``."""
        for tp, offset in next_offsets.items():
            if tp in self.until and offset >= self.until[tp]:
                self.done[tp] = self.until.pop(tp)
                self.skip.pop(tp, None)

    def forget(self, tp: TopicPartition) -> None:
        self.until.pop(tp, None)
        self.skip.pop(tp, None)
        self.done.pop(tp, None)
