"""Which changelog records a restore takes, as of the committed input offset, and which offsets wait for a checkpoint (no broker)."""

from __future__ import annotations

import pytest

from stream.state.changelog import ENTITY_PREFIX, MARKER_KEY, StateRecord, select
from stream.state.checkpoints import CheckpointDelivery, CheckpointSchedule

SPEC = "spec-1"


def entity(name: str, value: bytes | None, offset: int, spec: str = SPEC) -> StateRecord:
    return StateRecord(ENTITY_PREFIX + name.encode(), value, offset, spec)


def marker(offset: int, drift: bytes = b"", spec: str = SPEC, clock: int | None = None) -> StateRecord:
    return StateRecord(MARKER_KEY, drift, offset, spec, clock)


LOG = [
    entity("a", b"a@100", 100), entity("b", b"b@100", 100), marker(100, b"d@100"),
    entity("a", b"a@200", 200), marker(200, b"d@200"),
    entity("b", b"b@300", 300),  # a checkpoint cut short: no marker follows
]


def test_the_last_marker_and_versions_at_or_before_the_committed_offset_are_taken() -> None:
    state = select(3, 250, LOG, SPEC)
    assert state.resume_at == 200 and state.drift == b"d@200"
    assert state.entities == {"a": b"a@200", "b": b"b@100"}
    assert state.skip == {} and state.ignored == 1 and state.read == len(LOG)


def test_a_version_newer_than_the_last_marker_skips_its_own_events_in_the_replay() -> None:
    state = select(3, 300, LOG, SPEC)
    assert state.resume_at == 200
    assert state.entities == {"a": b"a@200", "b": b"b@300"}
    assert state.skip == {"b": 300}


def test_versions_beyond_the_commit_fall_back_to_the_one_before() -> None:
    state = select(3, 150, LOG, SPEC)
    assert state.resume_at == 100 and state.drift == b"d@100"
    assert state.entities == {"a": b"a@100", "b": b"b@100"}
    assert state.ignored == 3


def test_without_a_usable_checkpoint_the_input_is_read_again_from_its_start() -> None:
    nothing_committed = select(0, None, LOG, SPEC)
    assert nothing_committed.entities == {} and nothing_committed.resume_at is None
    for state in (select(0, 99, LOG, SPEC), select(0, 1_000, [entity("a", b"x", 10)], SPEC),
                  select(0, 1_000, LOG, "spec-2")):
        assert state.entities == {} and state.resume_at == 0
    assert select(0, 1_000, LOG, "spec-2").ignored == len(LOG)


def test_a_later_log_entry_wins_even_with_a_lower_offset() -> None:
    """A restarted scorer writes again from an older checkpoint: log order, not offset, decides."""
    log = [*LOG[:5], entity("a", b"a@250-dead", 250), marker(250), entity("a", b"a@240", 240), marker(240)]
    state = select(0, 260, log, SPEC)
    assert state.resume_at == 240 and state.entities["a"] == b"a@240"


def test_a_tombstone_removes_its_entity_and_the_marker_brings_its_clock() -> None:
    log = [*LOG[:3], entity("a", None, 150), marker(150, b"d@150", clock=9_000)]
    state = select(3, 160, log, SPEC)
    assert state.entities == {"b": b"b@100"} and state.resume_at == 150 and state.clock == 9_000
    assert select(3, 120, log, SPEC).clock is None  # format 1 marker: no clock


class FakeSink:
    """Acknowledges checkpoints when the test says so."""

    def __init__(self) -> None:
        self.acked = False
        self.flushes = 0

    def settled(self) -> bool:
        return self.acked

    def flush(self) -> None:
        self.flushes += 1
        self.acked = True


def test_offsets_of_a_checkpointed_partition_wait_for_its_checkpoint_and_the_rest_do_not() -> None:
    sink = FakeSink()
    delivery = CheckpointDelivery(sink)  # type: ignore[arg-type]
    assert delivery.committable({("in", 0): 10, ("in", 1): 20}) == {("in", 0): 10, ("in", 1): 20}
    delivery.sent([("in", 0)])
    # partition 0's checkpoint is in flight: its offsets are held, later ones too; partition 1 goes on
    assert delivery.committable({("in", 0): 11, ("in", 1): 21}) == {("in", 1): 21}
    assert delivery.committable({("in", 0): 12}) == {}
    assert delivery.committable({}) == {}
    sink.acked = True
    # acknowledged: the newest held offset goes with the next commit
    assert delivery.committable({("in", 1): 22}) == {("in", 0): 12, ("in", 1): 22}
    assert delivery.committable({}) == {}
    assert sink.flushes == 0


def test_waiting_for_checkpoints_leaves_nothing_held() -> None:
    sink = FakeSink()
    delivery = CheckpointDelivery(sink)  # type: ignore[arg-type]
    delivery.sent([("in", 3)])
    assert delivery.committable({("in", 3): 7}) == {}
    assert delivery.committable({("in", 3): 9}, wait=True) == {("in", 3): 9}
    assert sink.flushes == 1
    assert delivery.committable({}, wait=True) == {}
    assert sink.flushes == 1  # nothing was waiting any more


def test_checkpoints_come_once_per_interval_spread_evenly_over_the_partitions() -> None:
    schedule = CheckpointSchedule(interval_s=4.0, started=0.0)
    saved: list[tuple[float, int]] = []
    now = 0.0
    while now < 12.0:  # a batch every 50 ms, every partition moving
        for p in schedule.due(range(4), now):
            saved.append((now, p))
            schedule.saved([p], now)
        now = round(now + 0.05, 2)
    times = [t for t, _ in saved]
    # first round from 4 s on, one partition a second (4 s / 4 partitions), then each again 4 s later
    assert times == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    assert [p for _, p in saved] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_a_partition_a_whole_interval_late_is_saved_at_once_and_zero_means_every_batch() -> None:
    schedule = CheckpointSchedule(interval_s=1.0, started=0.0)
    assert schedule.due([0, 1, 2], 0.5) == []
    assert schedule.due([0, 1, 2], 1.0) == [0]
    schedule.saved([0], 1.0)
    assert schedule.due([0, 1, 2], 1.1) == []  # within a third of the interval of the last save
    assert schedule.due([0, 1, 2], 2.0) == [1, 2]  # both are two intervals behind their last save
    every = CheckpointSchedule(interval_s=0.0, started=0.0)
    assert every.due([3, 1], 0.0) == [1, 3]


class Message:
    """A changelog message as the restore reads it."""

    def __init__(self, headers: list[tuple[str, bytes]], key: bytes = b"m", value: bytes | None = b"") -> None:
        self._headers, self._key, self._value = headers, key, value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return "state"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 17


def test_records_carry_a_format_and_a_newer_one_is_refused_not_misread() -> None:
    from stream.exceptions import StateRestoreError
    from stream.state.changelog import CLOCK_HEADER, FORMAT, FORMAT_HEADER, OFFSET_HEADER, SPEC_HEADER, _record

    base = [(SPEC_HEADER, SPEC.encode()), (OFFSET_HEADER, b"120")]
    old = _record(Message(base))  # format 1: before the header existed
    assert (old.offset, old.spec, old.clock) == (120, SPEC, None)
    now = _record(Message([*base, (FORMAT_HEADER, str(FORMAT).encode()), (CLOCK_HEADER, b"1700000000000")]))
    assert now.clock == 1_700_000_000_000
    for unknown in (str(FORMAT + 1).encode(), b"two"):
        with pytest.raises(StateRestoreError, match=r"state\[2\]@17 has layout format"):
            _record(Message([*base, (FORMAT_HEADER, unknown)]))


def test_entities_written_in_the_layout_before_are_marked_for_their_summaries_to_be_recomputed() -> None:
    """After an upgrade, keys not saved since keep their format-2 versions; newer versions of a key replace them."""
    log = [
        StateRecord(ENTITY_PREFIX + b"a", b"a@100", 100, SPEC, layout=2),
        StateRecord(ENTITY_PREFIX + b"b", b"b@100", 100, SPEC, layout=2), marker(100),
        entity("b", b"b@200", 200), marker(200),
    ]
    state = select(3, 200, log, SPEC)
    assert state.entities == {"a": b"a@100", "b": b"b@200"}
    assert state.legacy == {"a"}
