"""Offset commits: one asynchronous commit in flight at a time, the newest offsets in the next one, and nothing
committed later that a synchronous commit or a new owner has moved past (no broker)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, TopicPartition

from stream.kafka import source as source_module
from stream.kafka.source import KafkaSource
from stream.types import Offsets

A0, A1 = ("in", 0), ("in", 1)


class Committer:
    """Records every commit request: its offsets and whether it was asynchronous."""

    def __init__(self) -> None:
        self.sent: list[tuple[Offsets, bool]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.sent.append(({(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))


def source(consumer: Committer) -> KafkaSource:
    src = KafkaSource.__new__(KafkaSource)
    src._consumer = consumer
    src._pending, src.committed_offsets, src._commit_sent_at = {}, {}, None
    src.assigned, src.on_revoked = {A0, A1}, None
    return src


def answered(src: KafkaSource, offsets: Offsets) -> None:
    """The coordinator's answer to a commit, as the consumer hands it to the callback."""
    src._on_commit(None, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])


def test_batches_given_while_a_commit_is_in_flight_go_in_one_commit_of_the_newest_offsets() -> None:
    consumer = Committer()
    src = source(consumer)
    src.commit({A0: 1})
    src.commit({A0: 2})
    src.commit({A0: 3, A1: 5})
    assert consumer.sent == [({A0: 1}, True)]  # one in flight: the other two wait for its answer
    answered(src, {A0: 1})
    assert src.committed_offsets == {A0: 1}
    src.commit({})  # the loop's call with nothing new (idle) sends what waited
    assert consumer.sent[1:] == [({A0: 3, A1: 5}, True)]
    answered(src, {A0: 3, A1: 5})
    src.commit({})
    assert len(consumer.sent) == 2 and src._pending == {} and src.committed_offsets == {A0: 3, A1: 5}


def test_an_offset_committed_synchronously_at_revocation_is_not_sent_again_later() -> None:
    consumer = Committer()
    src = source(consumer)
    src.commit({A0: 1})
    src.commit({A0: 2, A1: 4})
    src.commit_pending({A0})
    assert consumer.sent == [({A0: 1}, True), ({A0: 2}, False)]
    answered(src, {A0: 1})  # the late answer to the first commit takes nothing back
    assert src.committed_offsets == {A0: 2}
    src.commit({})
    assert consumer.sent[2:] == [({A1: 4}, True)]


def test_an_asynchronous_commit_that_failed_goes_again_with_the_next_one() -> None:
    consumer = Committer()
    src = source(consumer)
    src.commit({A0: 1, A1: 4})
    src.commit({A0: 2})
    failed = [TopicPartition(*A0, 1), TopicPartition(*A1, 4)]
    src._on_commit(KafkaError(KafkaError.REQUEST_TIMED_OUT), failed)
    src.commit({})
    # A0's newer offset supersedes the failed one; A1 has nothing newer, so its failed offset goes again
    assert consumer.sent[1:] == [({A0: 2, A1: 4}, True)]
    assert src.committed_offsets == {}


def test_a_lost_partition_is_not_committed_by_the_member_that_lost_it() -> None:
    consumer = Committer()
    src = source(consumer)
    src.commit({A0: 1})
    src.commit({A0: 2})
    src._on_lost(None, [TopicPartition(*A0)])
    answered(src, {A0: 1})
    src.commit({})
    src.commit_pending()
    assert consumer.sent == [({A0: 1}, True)]


def test_a_commit_left_unanswered_no_longer_holds_back_the_next(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    consumer = Committer()
    src = source(consumer)
    src.commit({A0: 1})
    src.commit({A0: 2})
    assert len(consumer.sent) == 1
    monkeypatch.setattr(source_module, "COMMIT_ANSWER_TIMEOUT_S", 0.0)
    src.commit({A0: 3})
    assert consumer.sent[1:] == [({A0: 3}, True)]
    assert "no answer to the offset commit" in caplog.text
