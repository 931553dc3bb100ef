"""Which changelog records a restore takes, as of the committed input offset (no broker)."""

from __future__ import annotations

from stream.changelog import ENTITY_PREFIX, MARKER_KEY, select

SPEC = "spec-1"


def entity(name: str, value: bytes, offset: int, spec: str = SPEC):
    return ENTITY_PREFIX + name.encode(), value, offset, spec


def marker(offset: int, drift: bytes = b"", spec: str = SPEC):
    return MARKER_KEY, drift, offset, spec


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
    log = LOG[:5] + [entity("a", b"a@250-dead", 250), marker(250)] + [entity("a", b"a@240", 240), marker(240)]
    state = select(0, 260, log, SPEC)
    assert state.resume_at == 240 and state.entities["a"] == b"a@240"
