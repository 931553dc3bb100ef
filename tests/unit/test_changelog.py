"""Which changelog records a restore takes, as of the committed input offset, and which offsets wait for a checkpoint (no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest

from features import FeatureSpec, FeatureStore
from stream.kafka.sink import PredictionSink
from stream.state.changelog import ENTITY_PREFIX, MARKER_KEY, Changelog, PartitionState, StateRecord, select
from stream.state.checkpoints import CheckpointDelivery, CheckpointSchedule
from tests.unit.test_windows import FIELDS, WINDOWS

SPEC = "spec-1"
STORE_SPEC = FeatureSpec(fields=FIELDS, windows=WINDOWS)


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
    assert state.stale == {"b"}, "b's version beyond the commit would outlive b@100 in compaction"


def test_a_version_newer_than_the_last_marker_skips_its_own_events_in_the_replay() -> None:
    state = select(3, 300, LOG, SPEC)
    assert state.resume_at == 200
    assert state.entities == {"a": b"a@200", "b": b"b@300"}
    assert state.skip == {"b": 300} and state.stale == set()


def test_versions_beyond_the_commit_fall_back_to_the_one_before() -> None:
    state = select(3, 150, LOG, SPEC)
    assert state.resume_at == 100 and state.drift == b"d@100"
    assert state.entities == {"a": b"a@100", "b": b"b@100"}
    assert state.ignored == 3 and state.stale == {"a", "b"}


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
    assert state.older == {"a": 2}


class CapturedSink:
    """What a checkpoint sends, as the messages a restore reads back (in order, one partition)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, topic: str, key: bytes, value: bytes | None, headers: Any = None, partition: int = -1) -> None:
        self.messages.append(Message(list(headers or []), key, value))

    def send_many(self, topic: str, keys: Sequence[bytes], values: Sequence[bytes | None], headers: Any = None,
                  partition: int = -1) -> None:
        for key, value in zip(keys, values):
            self.send(topic, key, value, headers, partition)


def filled(events: int = 3_000) -> FeatureStore:
    store = FeatureStore(STORE_SPEC, key_ttl_ms=10_000)
    rng = np.random.default_rng(7)
    keys = [f"key-{i}" for i in rng.integers(0, 40, events)]
    times = 1_700_000_000_000 + np.arange(events, dtype=np.int64) * 50
    store.update_arrays(keys, times, rng.normal(size=(events, len(FIELDS))), np.zeros(events, dtype=np.int64))
    return store


def restored_from(messages: list[Message], committed: int) -> tuple[FeatureStore, PartitionState]:
    from stream.state.changelog import _record

    log = Changelog(topic="state", store=FeatureStore(STORE_SPEC, key_ttl_ms=10_000), monitor=None,
                    reader_settings={}, timeout_s=1.0)
    state = select(0, committed, [_record(m) for m in messages], log.store.fingerprint)
    log.apply(state)
    return log.store, state


def test_a_checkpoint_restores_every_key_bit_for_bit_with_its_offset_and_spec_in_the_value() -> None:
    store = filled()
    log = Changelog(topic="state", store=store, monitor=None, reader_settings={}, timeout_s=1.0)
    sink = CapturedSink()
    assert log.checkpoint(cast(PredictionSink, sink), {0: 3_000}) == len(store) + 1
    entities = [m for m in sink.messages if m.key() != MARKER_KEY]
    assert len(entities) == len(store) and all(m.headers() == [] for m in entities), "entity records have no headers"
    assert store.dirty(0) == []

    restored, state = restored_from(sink.messages, committed=3_000)
    assert state.restored == len(store) and state.ignored == 0 and state.resume_at == 3_000
    keys = sorted(store.keys(0))
    assert sorted(restored.keys(0)) == keys and restored.export(keys) == store.export(keys)
    assert restored.clock(0) == store.clock(0)
    assert restored.dirty(0) == [], "a restored key's record stays its latest version"
    # a version beyond the commit: the key's restored version is written again at the next checkpoint
    store.update_arrays(["key-3"], np.array([1_700_000_200_000]), np.ones((1, len(FIELDS))), np.zeros(1, dtype=np.int64))
    later = CapturedSink()
    log.checkpoint(cast(PredictionSink, later), {0: 3_001})
    restored, state = restored_from(sink.messages + later.messages, committed=3_000)
    assert state.stale == set() and restored.dirty(0) == ["key-3"]
    assert restored.export(["key-3"]) != store.export(["key-3"]), "the version beyond the commit was not taken"
    # versions beyond the commit are not taken: the offset in the value is read
    assert restored_from(sink.messages, committed=2_999)[1].restored == 0
    # nor those of another spec: the fingerprint in the value is read
    other = [Message([], m.key(), m.value()[:16] + b"\x00" * 8 + m.value()[24:]) for m in entities]
    assert restored_from([*other, sink.messages[-1]], committed=3_000)[1].ignored == len(entities)


def test_entity_records_of_format_3_with_their_headers_still_restore() -> None:
    from stream.state.changelog import ENTITY_HEAD, FORMAT_HEADER, OFFSET_HEADER, SPEC_HEADER

    store = filled()
    log = Changelog(topic="state", store=store, monitor=None, reader_settings={}, timeout_s=1.0)
    sink = CapturedSink()
    log.checkpoint(cast(PredictionSink, sink), {0: 3_000})
    headers = [(SPEC_HEADER, store.fingerprint.encode()), (OFFSET_HEADER, b"3000"), (FORMAT_HEADER, b"3")]
    format_3 = [Message(headers, m.key(), m.value()[ENTITY_HEAD.size:]) if m.key() != MARKER_KEY else m
                for m in sink.messages]
    restored, state = restored_from(format_3, committed=3_000)
    keys = sorted(store.keys(0))
    assert state.restored == len(keys) and restored.export(keys) == store.export(keys)


def test_an_entity_record_without_headers_of_an_unknown_format_or_cut_short_is_refused() -> None:
    from stream.exceptions import StateRestoreError
    from stream.state.changelog import ENTITY_HEAD, FORMAT, _record

    newer = ENTITY_HEAD.pack(FORMAT + 1, 10, bytes(8)) + bytes(64)
    with pytest.raises(StateRestoreError, match=rf"state\[2\]@17 has layout format {FORMAT + 1}"):
        _record(Message([], b"ka", newer))
    for short in (b"", None, ENTITY_HEAD.pack(FORMAT, 10, bytes(8))[:20]):
        with pytest.raises(StateRestoreError, match="no headers and a value of"):
            _record(Message([], b"ka", short))


def test_a_restore_in_chunks_loads_every_key_and_a_bad_record_in_a_later_chunk_leaves_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks free their stored bytes as they load; a record that does not load still fails the partition whole."""
    import stream.state.changelog as changelog
    from stream.exceptions import StateRestoreError

    monkeypatch.setattr(changelog, "RESTORE_CHUNK", 7)
    store = filled()
    log = Changelog(topic="state", store=store, monitor=None, reader_settings={}, timeout_s=1.0)
    sink = CapturedSink()
    log.checkpoint(cast(PredictionSink, sink), {0: 3_000})
    assert len(store) > 3 * 7, "several chunks"
    restored, state = restored_from(sink.messages, committed=3_000)
    keys = sorted(store.keys(0))
    assert state.restored == len(keys) and state.entities == {}
    assert sorted(restored.keys(0)) == keys and restored.export(keys) == store.export(keys)
    assert restored.clock(0) == store.clock(0)

    # The log's first entity is loaded last (a chunk after others loaded): cut its value short.
    first = sink.messages[0]
    damaged = [Message(first.headers(), first.key(), (first.value() or b"")[:-3]), *sink.messages[1:]]
    reader = Changelog(topic="state", store=FeatureStore(STORE_SPEC, key_ttl_ms=10_000), monitor=None,
                       reader_settings={}, timeout_s=1.0)
    bad = select(0, 3_000, [changelog._record(m) for m in damaged], reader.store.fingerprint)
    with pytest.raises(StateRestoreError, match=r"state\[0\] does not load"):
        reader.apply(bad)
    assert len(reader.store) == 0, "no key of a partition that failed to load stays"
