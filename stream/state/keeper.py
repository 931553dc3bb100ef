"""The state of the assigned input partitions, kept in step with the changelog across rebalances and aborts.

The run loop asks four things of it: what a rebalance decided (restores and
drops, applied between batches), which of a batch's offsets may be committed
(not those still being replayed), when to checkpoint, and where to read from
after a batch is abandoned. Without a changelog it keeps nothing, and an
abandoned batch is read again from its first offsets. With or without one,
keys idle past ``state.key_ttl_s`` are forgotten on the checkpoint schedule
(off the per-event path).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

from features import FeatureStore
from stream.kafka.sink import PredictionSink
from stream.state.changelog import Changelog, PartitionState
from stream.state.checkpoints import CheckpointDelivery, CheckpointSchedule
from stream.state.replay import Replay
from stream.types import Offsets, TopicPartition

__all__ = ["StateKeeper"]

logger = logging.getLogger(__name__)

_Op = tuple[Literal["restore"], dict[int, PartitionState]] | tuple[Literal["drop"], set[int]]


class StateKeeper:
    """Restores, drops, replays and checkpoints the window state of one input topic's assigned partitions."""

    def __init__(
        self,
        *,
        input_topic: str,
        store: FeatureStore,
        changelog: Changelog | None,
        checkpoints: CheckpointDelivery | None,
        checkpoint_interval_s: float,
        restore_seconds: Histogram,
        restored: Counter,
        records: Counter,
        expired: Counter | None = None,
        live: Gauge | None = None,
    ) -> None:
        self.input_topic = input_topic
        self.store = store
        self.changelog = changelog
        self.checkpoints = checkpoints  # at-least-once: the changelog's own producer
        self.replay = Replay()  # input read again after a restore, for state only
        self._progress: dict[int, int] = {}  # input partition -> next offset, since its last checkpoint
        self._schedule = CheckpointSchedule(checkpoint_interval_s, time.monotonic())
        # Restores and drops decided in rebalance callbacks (possibly on the
        # keep-alive thread), applied by the loop between batches.
        self._ops: deque[_Op] = deque()
        self._restore_seconds = restore_seconds
        self._restored = restored
        self._records = records
        self._expired = expired
        self._live = live

    def on_assigned(self, committed: Mapping[TopicPartition, int | None]) -> Offsets:
        """Rebalance callback: read the new partitions' state; they start where their replay starts."""
        states = self._read({p: c for (t, p), c in committed.items() if t == self.input_topic})
        self._ops.append(("restore", states))
        return self._starts(states)

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: the state of partitions that left goes with them."""
        self._ops.append(("drop", {p for t, p in partitions if t == self.input_topic}))

    def apply_rebalance(self) -> None:
        """Apply the restores and drops the rebalance callbacks decided, in order."""
        while self._ops:
            op = self._ops.popleft()
            if op[0] == "drop":
                for partition in op[1]:
                    assert self.changelog is not None
                    self.changelog.drop(partition)
                    self.replay.forget((self.input_topic, partition))
                    self._progress.pop(partition, None)
            else:
                self._restore(op[1])

    def scored(self, next_offsets: Offsets) -> Offsets:
        """A batch was scored up to ``next_offsets``: the ones to commit (input replayed for state only stays)."""
        committable = self.replay.committable(next_offsets)
        self.replay.advance(committable)
        for (topic, partition), offset in committable.items():
            if topic == self.input_topic:
                self._progress[partition] = offset
        return committable

    def reset(self, first: Offsets) -> Offsets:
        """After a batch is abandoned: its partitions' state back to their commit; where to read from.

        ``first`` is each partition's first offset in the batch. Without a
        changelog the windows keep the abandoned events (they count twice).
        """
        if self.changelog is None:
            return first
        committed = {p: self.replay.delivered((t, p), o) for (t, p), o in first.items() if t == self.input_topic}
        states = self._read(committed)
        self._restore(states)
        return {**first, **self._starts(states)}

    @property
    def unsaved(self) -> bool:
        """Whether some partition's state moved since its last checkpoint and a changelog would take it."""
        return self.changelog is not None and bool(self._progress)

    def maybe_checkpoint(self, sink: PredictionSink, everything: bool = False) -> dict[int, int]:
        """Save changed state as the schedule says: on ``sink`` (the batch's transaction), or on its own producer.

        ``everything`` saves every partition that moved, schedule or not (a
        clean stop). Keys idle past the ttl are forgotten then (and
        tombstoned). Returns the partitions saved, with the offsets their
        state reflects.
        """
        if not self._progress:
            return {}
        now = time.monotonic()
        due = sorted(self._progress) if everything else self._schedule.due(self._progress, now)
        if not due:
            return {}
        progress = {p: self._progress.pop(p) for p in due}
        self._schedule.saved(progress, now)
        expired = {p: self.store.expire(p) for p in progress}
        if self._expired is not None:
            self._expired.inc(sum(map(len, expired.values())))
        if self._live is not None:
            self._live.set(len(self.store))
        if self.changelog is None:
            return {}
        target = sink if self.checkpoints is None else self.checkpoints.sink
        self._records.inc(self.changelog.checkpoint(target, progress, expired))
        if self.checkpoints is not None:
            self.checkpoints.sent((self.input_topic, p) for p in progress)
        return progress

    def committable(self, offsets: Offsets, wait: bool = False) -> Offsets:
        """Of ``offsets``, those whose checkpoints are acknowledged (at-least-once); ``wait`` for all of them."""
        if self.checkpoints is None:
            return offsets
        return self.checkpoints.committable(offsets, wait=wait)

    def close(self) -> None:
        """Close the checkpoints' own producer, if there is one."""
        if self.checkpoints is not None:
            self.checkpoints.sink.close()

    def _read(self, committed: Mapping[int, int | None]) -> dict[int, PartitionState]:
        """The changelog's state of these input partitions as of their committed offsets."""
        assert self.changelog is not None
        started = time.monotonic()
        states = self.changelog.read(committed)
        self._restore_seconds.observe(time.monotonic() - started)
        return states

    def _starts(self, states: dict[int, PartitionState]) -> Offsets:
        """Where restored partitions are read from: their last checkpoint, when they have one."""
        return {(self.input_topic, p): s.resume_at for p, s in states.items() if s.resume_at is not None}

    def _restore(self, states: dict[int, PartitionState]) -> None:
        """Load restored partitions' state and replay their input from the checkpoint to the commit."""
        assert self.changelog is not None
        self.changelog.apply_all(states)
        for state in states.values():
            self._replay_to_commit(state)

    def _replay_to_commit(self, state: PartitionState) -> None:
        """Read a restored partition again from its checkpoint to its commit, for state only."""
        tp = (self.input_topic, state.partition)
        self._restored.inc(state.restored)
        self.replay.forget(tp)
        self._progress.pop(state.partition, None)
        if state.resume_at is not None and state.committed is not None and state.resume_at < state.committed:
            self.replay.until[tp] = state.committed
            if state.skip:
                self.replay.skip[tp] = state.skip
        if state.restored or tp in self.replay.until:
            logger.info("restored %d entities of %s[%d]%s", state.restored, *tp,
                        f"; replaying offsets {state.resume_at}-{state.committed}" if tp in self.replay.until else "")
