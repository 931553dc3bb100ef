"""When each partition's state is saved, and (at-least-once) the offsets that wait for its acknowledgement."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stream.kafka.sink import PredictionSink
from stream.types import Offsets, TopicPartition

__all__ = ["CheckpointDelivery", "CheckpointSchedule"]


class CheckpointSchedule:
    """When each input partition's state is saved: once per interval, the partitions spread evenly over it.

    Taken together, the checkpoints of eight partitions (2.7 MB for 1,000
    demo keys) in consecutive batches were a burst of work for the producer
    and the broker that delayed the outputs of the batches around it. Spread,
    one partition goes every ``interval / partitions``; a partition a whole
    interval late goes at once.
    """

    def __init__(self, interval_s: float, started: float) -> None:
        self.interval_s = interval_s
        self._started = started
        self._saved_at: dict[int, float] = {}  # partition -> when its state was last saved
        self._last = started  # when any partition was last saved

    def due(self, partitions: Iterable[int], now: float) -> list[int]:
        """Of the partitions with unsaved progress, the ones to save now (oldest first)."""
        partitions = list(partitions)
        if self.interval_s <= 0:
            return sorted(partitions)
        waiting = sorted((self._saved_at.get(p, self._started), p) for p in partitions)
        late = [p for at, p in waiting if now - at >= 2 * self.interval_s]
        if late:
            return late
        gap = self.interval_s / max(len(partitions), 1)
        if waiting and now - waiting[0][0] >= self.interval_s and now - self._last >= gap:
            return [waiting[0][1]]
        return []

    def saved(self, partitions: Iterable[int], now: float) -> None:
        """The state of ``partitions`` went out at ``now``."""
        for p in partitions:
            self._saved_at[p] = now
            self._last = now


class CheckpointDelivery:
    """At-least-once: checkpoints on a producer of their own, and the input offsets that wait for them.

    A checkpoint is hundreds of KB (125 demo keys with full windows: 340 KB).
    On the outputs' producer, the flush that acknowledges a batch of
    predictions waited for it too, delaying that batch and the next by
    15-35 ms. Here it is delivered while the next batches go on, and only the
    offsets of the partitions it covers are held back until it is
    acknowledged; a crash before then reads those partitions again from their
    last commit, as any uncommitted batch is.
    """

    def __init__(self, sink: PredictionSink) -> None:
        self.sink = sink
        self._waiting: set[TopicPartition] = set()  # partitions with a checkpoint not yet acknowledged
        self._held: Offsets = {}  # their offsets, to commit once it is

    def sent(self, partitions: Iterable[TopicPartition]) -> None:
        """A checkpoint covering ``partitions`` was handed to ``sink``."""
        self._waiting.update(partitions)

    def committable(self, offsets: Mapping[TopicPartition, int], wait: bool = False) -> Offsets:
        """Of ``offsets`` (and those held before), the ones whose checkpoints are acknowledged; holds the rest.

        With ``wait`` (revocation, stop), waits for every checkpoint sent, so nothing is held afterwards.
        """
        if self._waiting:
            if wait:
                self.sink.flush()
            if wait or self.sink.settled():
                self._waiting.clear()
        if self._held:
            offsets, self._held = {**self._held, **offsets}, {}
        for tp in self._waiting.intersection(offsets):
            self._held[tp] = offsets[tp]
        return {tp: o for tp, o in offsets.items() if tp not in self._held}
