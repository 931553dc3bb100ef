"""The helper that keeps a consumer in its group while a long batch is scored."""

from __future__ import annotations

import time

from stream.runtime.keepalive import KeepAlive


class FakeSource:
    """Records the calls; keep_alive blocks like a poll with a timeout."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def keep_alive(self, timeout_s: float) -> None:
        self.calls.append("poll")
        time.sleep(timeout_s)

    def resume(self) -> None:
        self.calls.append("resume")


def test_a_short_batch_leaves_the_consumer_alone() -> None:
    source = FakeSource()
    keep_alive = KeepAlive(source, after_s=0.5)
    for _ in range(100):
        with keep_alive:
            pass
    time.sleep(0.6)
    keep_alive.close()
    assert source.calls == [] and keep_alive.pauses == 0


def test_a_long_batch_pauses_polls_and_resumes_before_the_loop_goes_on() -> None:
    source = FakeSource()
    keep_alive = KeepAlive(source, after_s=0.3)
    with keep_alive:
        time.sleep(1.5)  # a slow model call
        assert source.calls[:2] == ["pause", "poll"], "the consumer is polled while the batch runs"
    # leaving the block waits for the helper: the consumer is resumed, and nothing polls it any more
    assert source.calls[-1] == "resume" and source.calls.count("resume") == 1
    done = len(source.calls)
    time.sleep(0.6)
    keep_alive.close()
    assert len(source.calls) == done and keep_alive.pauses == 1
