"""How long a micro-batch waits: not at all beyond what is ready by default; to fill, counted from its first
message's timestamp, when batch.max_wait_ms asks for it (no broker)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from stream.kafka.source import KafkaSource


class Msg:
    def __init__(self, age_s: float, kind: int = TIMESTAMP_CREATE_TIME) -> None:
        self._stamp = (kind, int((time.time() - age_s) * 1000))

    def timestamp(self):
        return self._stamp

    def error(self):
        return None


class FakeConsumer:
    """Records each call: what is queued now, what arrives while waiting."""

    def __init__(self, queued: list[Msg], arriving: list[Msg]) -> None:
        self.queued, self.arriving = queued, arriving
        self.calls: list[tuple[str, float]] = []

    def consume(self, num_messages: int, timeout: float):
        self.calls.append(("consume", timeout))
        out, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        if not out and timeout > 0:
            out, self.arriving = self.arriving[:num_messages], self.arriving[num_messages:]
        return out

    def poll(self, timeout: float):
        self.calls.append(("poll", timeout))
        return self.arriving.pop(0) if self.arriving else None


def source(consumer: FakeConsumer) -> KafkaSource:
    src = KafkaSource.__new__(KafkaSource)
    src._consumer, src._fatal, src._last_error = consumer, None, None
    return src


def test_queued_messages_wait_only_what_is_left_of_the_budget() -> None:
    consumer = FakeConsumer([Msg(0.030), Msg(0.020)], [Msg(0.0)])
    batch = source(consumer).poll_batch(100, 0.050)
    assert len(batch) == 3
    assert consumer.calls[0] == ("consume", 0)
    kind, left = consumer.calls[1]
    assert kind == "consume" and 0.010 < left < 0.021  # 50 ms less the first message's 30 ms


def test_an_old_first_message_means_no_wait_at_all() -> None:
    consumer = FakeConsumer([Msg(5.0)], [Msg(0.0)])
    assert len(source(consumer).poll_batch(100, 0.050)) == 1
    assert consumer.calls == [("consume", 0)]


@pytest.mark.parametrize("age_s, kind", [(-10.0, TIMESTAMP_CREATE_TIME), (0.0, TIMESTAMP_NOT_AVAILABLE)])
def test_with_nothing_queued_it_waits_for_a_first_message_then_the_full_budget(age_s: float, kind: int) -> None:
    """A clock ahead of ours, or no timestamp: the wait is clamped to the budget."""
    consumer = FakeConsumer([], [Msg(age_s, kind), Msg(0.0)])
    assert len(source(consumer).poll_batch(100, 0.050)) == 2
    assert consumer.calls[:3] == [("consume", 0), ("poll", 0.050), ("consume", 0)]
    assert consumer.calls[3][0] == "consume" and consumer.calls[3][1] == pytest.approx(0.050, abs=0.002)


def test_a_full_batch_or_a_zero_budget_never_waits() -> None:
    consumer = FakeConsumer([Msg(0.0)] * 10, [Msg(0.0)])
    assert len(source(consumer).poll_batch(10, 0.050)) == 10
    assert len(source(FakeConsumer([], [Msg(0.0)])).poll_batch(10, 0.0)) == 0
    assert consumer.calls == [("consume", 0)]


def test_natural_batching_takes_what_is_ready_and_closes_the_batch() -> None:
    """No max_wait: with nothing queued, wait for a first message, take what else is ready, never wait to fill."""
    consumer = FakeConsumer([], [Msg(0.0), Msg(0.0)])
    batch = source(consumer).poll_batch(100, 0.0, idle_wait_s=0.1)
    assert len(batch) == 1
    assert consumer.calls == [("consume", 0), ("poll", 0.1), ("consume", 0)]
    # what is queued goes out at once, up to the batch size, with no wait at all
    consumer = FakeConsumer([Msg(0.0)] * 250, [Msg(0.0)])
    assert len(source(consumer).poll_batch(100, 0.0, idle_wait_s=0.1)) == 100
    assert consumer.calls == [("consume", 0)]
    # with a batch in flight the loop asks for no idle wait: nothing queued means an empty batch at once
    consumer = FakeConsumer([], [Msg(0.0)])
    assert source(consumer).poll_batch(100, 0.0) == [] and consumer.calls == [("consume", 0)]
