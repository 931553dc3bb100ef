"""Window state follows its partition: restarts and rebalances change no prediction (real broker)."""

from __future__ import annotations

import numpy as np
import pytest

from features import compute_features
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import produce, read_topic, service_config, unique

pytestmark = pytest.mark.integration

PREDICTION = AvroCodec(load_schema("prediction"))


def _scores(records) -> dict[tuple[int, int], float]:
    out = {}
    for r in records:
        p = PREDICTION.decode(r.value)
        out[(p["source_partition"], p["source_offset"])] = p["score"]
    return out


@pytest.mark.parametrize("guarantee, changelog", [
    ("at_least_once", True), ("exactly_once", True), ("at_least_once", False)])
def test_a_restarted_scorer_scores_as_if_it_never_stopped(
        kafka_bootstrap: str, small_model: ModelArtifact, guarantee: str, changelog: bool) -> None:
    """Three runs over one stream; each restart restores the windows (checkpoint, then replay to the commit).

    Without the changelog the same restarts compute features on empty
    windows, and scores differ: the comparison can fail.
    """
    topic = unique("restart")
    records = [r for r, _ in sensor_events(12_000, 200, seed=21)]
    positions = produce(kafka_bootstrap, topic, records, partitions=8)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=100,
                            processing__guarantee=guarantee, state__changelog=changelog,
                            state__checkpoint_interval_ms=150)
    for stop_after in (3_000, 4_000):
        service = build_service(config)
        service.run(max_events=stop_after)
        assert service.stats.consumed == stop_after
    build_service(config).run(idle_exit_seconds=3)

    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    scores = _scores(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(records),
                                isolation=isolation))
    assert set(scores) == set(positions), "every input scored, none twice"
    offline = BatchScorer(small_model).score(compute_features(config.features, records, "sensor_id", "ts")).score
    live = np.array([scores[pos] for pos in positions])
    mismatches = int(np.sum(live != offline))
    print(f"{guarantee}, changelog={changelog}: {mismatches} of {len(records)} scores differ from offline")
    if changelog:
        assert mismatches == 0
    else:
        assert mismatches > 100  # the windows started empty twice


def test_scores_are_identical_whether_one_worker_or_a_changing_set_scores_the_stream(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    """Exactly-once, 50,000 events over 8 partitions: 1 worker, then 3, then 2 after a SIGKILL (stream/tools/chaos)."""
    from stream.tools.chaos import determinism_scenario

    outcome = determinism_scenario(kafka_bootstrap, small_model.path, events=50_000)
    print(f"determinism: {outcome.determinism_mismatches} mismatches, restores {outcome.restore_seconds}, "
          f"killed at {outcome.outputs_at_kills}, {outcome.seconds}s")
    assert outcome.scorer_kills == 1 and 0 < outcome.outputs_at_kills[0] < outcome.inputs
    assert (outcome.lost, outcome.duplicates) == (0, 0)
    assert outcome.determinism_mismatches == 0
    assert outcome.restore_seconds, "partitions moved with their state"
