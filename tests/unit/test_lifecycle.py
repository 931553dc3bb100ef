"""Model versions while the stream flows, without a broker: checks, alias following, the shadow, the promotion rule."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from features import FeatureStore
from models import BatchScorer, LocalModelStore, ModelArtifact, ModelLoadError
from models.artifact import file_sha256
from models.checks import load_checked
from models.labels import LabelJoiner
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import ServiceConfig
from stream.pipeline.columns import prediction_encoder
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.quality import QualityTracker
from stream.pipeline.shadow import Shadow
from stream.runtime.versions import CHALLENGER, CHAMPION, VersionWatcher
from stream.tools.generators import sensor_events
from tests.integration.helpers import wait_until
from tests.unit.test_processor import OUT, SCHEMA, FakeMessage


class Raising:
    """A model whose every call raises, as a broken challenger does."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("challenger is broken")


def variant(small_model: ModelArtifact, folder: Path, model: Any = None, **manifest: Any) -> Path:
    """A copy of the small model's artifact, with another model object (saved as joblib) or manifest entries."""
    model_format = small_model.manifest["model_format"] if model is None else "joblib"
    ModelArtifact.save(folder, model if model is not None else small_model.model,
                       {k: v for k, v in {**small_model.manifest, **manifest}.items() if k != "sha256"}, model_format)
    return folder


def messages(n: int, start: int = 0, seed: int = 3) -> list[FakeMessage]:
    enc = AvroEncoder(SCHEMA)
    return [FakeMessage(enc.encode(r), start + i) for i, (r, _) in enumerate(sensor_events(n, 10, seed=seed))]


def processor(config: ServiceConfig, artifact: ModelArtifact, shadow: Shadow | None = None,
              labels: bool = False) -> BatchProcessor:
    quality = None
    if labels:
        quality = QualityTracker(None, artifact.version, LabelJoiner("classification", ["0", "1"]),
                                 AvroCodec(load_schema("label")))
    return BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(config.features), scorer=BatchScorer(artifact),
                          encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts", shadow=shadow,
                          quality=quality, labels_topic="labels" if labels else None)


def test_each_check_refuses_with_its_reason(small_config: ServiceConfig, small_model: ModelArtifact,
                                            tmp_path: Path) -> None:
    spec, fp = small_config.features, small_config.schema_fingerprint
    good = load_checked(small_model.path, spec, fp)
    assert good.artifact.version == small_model.version

    cases = {
        "features": variant(small_model, tmp_path / "f", features=list(reversed(small_model.feature_names))),
        "schema": variant(small_model, tmp_path / "s", input_schema_fingerprint="0" * 64),
        "classes": variant(small_model, tmp_path / "c", model=Raising(), classes=["0", "1"]),
        # a model that fails on input of the right shape: the probe batch finds it
        "probe": variant(small_model, tmp_path / "p",
                         model=make_pipeline(FunctionTransformer(np.transpose), small_model.model.steps[-1][1])),
    }
    Raising.classes_ = np.array(["no", "yes"])
    for reason, folder in cases.items():
        with pytest.raises(ModelLoadError) as info:
            load_checked(folder, spec, fp, running=good)
        assert info.value.reason == reason, (reason, str(info.value))

    # a manifest rewritten together with its model passes the manifest's sha256, not a pin
    rewritten = variant(small_model, tmp_path / "r", params={"changed": True})
    assert load_checked(rewritten, spec, fp).artifact.manifest["params"] == {"changed": True}
    model_file = rewritten / small_model.manifest["artifact"]
    with model_file.open("ab") as f:
        f.write(b"\0")
    manifest = json.loads((rewritten / "manifest.json").read_text())
    manifest["sha256"] = file_sha256(model_file)
    (rewritten / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"model\.sha256 pins") as info:
        load_checked(rewritten, spec, fp, expected_sha256=small_model.manifest["sha256"])
    assert info.value.reason == "sha256"


def watcher_for(store: LocalModelStore, config: ServiceConfig, running: BatchScorer,
                refused: list[tuple[str, str, str]], aliases: dict[str, str] | None = None) -> VersionWatcher:
    return VersionWatcher(
        store=store, model="fault", aliases=aliases or {CHAMPION: "champion"}, interval_s=0.05,
        load=lambda path, champion: load_checked(path, config.features, config.schema_fingerprint, running=champion),
        running={CHAMPION: running}, on_refused=lambda *r: refused.append(r))


def test_the_watcher_hands_over_a_promoted_version_and_refuses_a_bad_one(
        small_config: ServiceConfig, small_model: ModelArtifact, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)
    store.register("fault", small_model.path)
    store.register("fault", variant(small_model, tmp_path / "bad", features=list(reversed(small_model.feature_names))))
    store.set_alias("fault", "champion", "1")
    running = load_checked(store.resolve("fault", "champion").path, small_config.features,
                           small_config.schema_fingerprint)
    refused: list[tuple[str, str, str]] = []
    watcher = watcher_for(store, small_config, running, refused)
    watcher.start()
    try:
        store.set_alias("fault", "champion", "2")
        ready = wait_until(watcher.take, 10, "version 2 to be ready")
        assert [(r.role, r.scorer.artifact.version if r.scorer else None) for r in ready] == [(CHAMPION, "2")]
        # a version whose features differ from the windows': one refusal, however many polls, and 2 stays
        store.set_alias("fault", "champion", "3")
        wait_until(lambda: refused, 10, "version 3 to be refused")
        threading.Event().wait(0.3)
        assert refused == [(CHAMPION, "3", "features")]
        assert watcher.take() == []
        # an alias naming a version that is gone (deleted by hand): refused as missing, the running one stays
        store.set_alias("fault", "champion", "1")
        shutil.rmtree(store.root / "fault" / "1")
        wait_until(lambda: len(refused) == 2, 10, "the missing version to be refused")
        assert refused[1][2] == "missing" and watcher.store_ok
        # a half-written version folder (a crash mid-copy) is neither listed nor loaded
        (store.root / "fault" / "4").mkdir()
        (store.root / "fault" / "4" / "manifest.json").write_text("{}")
        store.set_alias("fault", "champion", "2")  # back to the running one: nothing to do
        with pytest.raises(Exception, match="is not a model artifact"):
            store.set_alias("fault", "champion", "4")
        assert watcher.take() == []
    finally:
        watcher.close()


def test_a_swap_between_batches_changes_the_version_predictions_name(
        small_config: ServiceConfig, small_model: ModelArtifact, tmp_path: Path) -> None:
    other = load_checked(variant(small_model, tmp_path / "v2", version="2"), small_config.features, None)
    proc = processor(small_config, small_model)
    batch = messages(300)
    first = proc.process(batch[:150])
    proc.use(other)
    second = proc.process(batch[150:])
    versions = [AvroCodec(OUT).decode(p.value)["model_version"] for r in (first, second) for p in r.predictions]
    assert versions == [small_model.version] * 150 + ["2"] * 150
    # the swap changed the model, not the windows: the same scores as one processor throughout
    straight = processor(small_config, small_model).process(batch)
    scores = [AvroCodec(OUT).decode(p.value)["score"] for r in (first, second) for p in r.predictions]
    assert scores == [AvroCodec(OUT).decode(p.value)["score"] for p in straight.predictions]


def test_a_challenger_that_raises_on_every_batch_changes_nothing_of_the_champion(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    shadow = Shadow()
    shadow.use(BatchScorer(ModelArtifact(Path("."), Raising(), {**small_model.manifest, "version": "9"})))
    with_shadow, alone = processor(small_config, small_model, shadow), processor(small_config, small_model)
    batch = messages(1000)
    try:
        for i in range(0, 1000, 100):
            a, b = with_shadow.process(batch[i:i + 100]), alone.process(batch[i:i + 100])
            assert [p.key for p in a.predictions] == [p.key for p in b.predictions]
            assert [AvroCodec(OUT).decode(p.value)["score"] for p in a.predictions] == \
                   [AvroCodec(OUT).decode(p.value)["score"] for p in b.predictions]
            assert not a.dead_letters
        stats = shadow.stats["9"]
        wait_until(lambda: shadow.collect() or stats.failed + stats.skipped == 10, 10, "every batch accounted for")
        assert stats.failed + stats.skipped == 10 and stats.failed >= 1 and stats.batches == 0
    finally:
        shadow.close()


def test_the_shadow_scores_the_same_features_and_is_judged_on_the_same_labels(
        small_config: ServiceConfig, small_model: ModelArtifact, tmp_path: Path) -> None:
    challenger = load_checked(variant(small_model, tmp_path / "v2", version="2"), small_config.features, None)
    shadow = Shadow(lambda scorer: prediction_encoder(load_schema("shadow_prediction"), b"", scorer, role="challenger"))
    shadow.use(challenger)
    proc = processor(small_config, small_model, shadow, labels=True)
    events = list(sensor_events(400, 10, seed=5))
    enc = AvroEncoder(SCHEMA)
    batch = [FakeMessage(enc.encode(r), i) for i, (r, _) in enumerate(events)]
    label_enc = AvroEncoder(load_schema("label"))
    try:
        results = []
        for i in range(0, 400, 50):
            results.append(proc.process(batch[i:i + 50]))
            wait_until(lambda: shadow._done or shadow.stats["2"].skipped, 10, "the challenger")
        results.append(proc.process([]))  # picks up the last outcome
        shadow_records = [AvroCodec(load_schema("shadow_prediction")).decode(v)
                          for r in results for v in r.shadow_values]
        champion = [AvroCodec(OUT).decode(p.value) for r in results for p in r.predictions]
        # the same model behind both: the same score for every event it shadowed
        assert len(shadow_records) == 400 - 50 * shadow.stats["2"].skipped
        by_offset = {c["source_offset"]: c for c in champion}
        for s in shadow_records:
            assert s["role"] == "challenger" and s["model_version"] == "2"
            assert s["score"] == by_offset[s["source_offset"]]["score"]
        assert shadow.stats["2"].agreement == 1.0
        # labels: each joins the champion's and the challenger's prediction, paired
        labels = "labels"
        label_messages = [FakeMessage(label_enc.encode({"id": f"in/0/{i}", "label": str(y), "label_time": 0}), i,
                                      _topic=labels) for i, (_, y) in enumerate(events)]
        proc.process(label_messages)
        assert proc.quality is not None and proc.quality.challenger_joiner is not None
        paired = proc.quality.challenger_joiner.paired
        assert paired.n == len(shadow_records)
        champion_metric, challenger_metric = paired.metrics()
        assert champion_metric == challenger_metric
        assert not paired.challenger_wins(1, 0.0001)
    finally:
        shadow.close()


def test_the_promotion_rule_needs_enough_labels_and_the_margin() -> None:
    joiner = LabelJoiner("classification", ["0", "1"])
    paired = joiner.paired
    for i in range(100):
        champion_right, challenger_right = i % 4 != 0, i % 10 != 0  # 0.75 against 0.90
        paired.update(float(not champion_right), float(not challenger_right))
    assert paired.metrics() == (0.75, 0.9)
    assert paired.challenger_wins(100, 0.1) and not paired.challenger_wins(101, 0.1)
    assert not paired.challenger_wins(100, 0.2) and not paired.challenger_wins(0, 0.0)
    paired.reset()
    assert paired.n == 0 and np.isnan(paired.metrics()[0])


def test_a_removed_challenger_alias_stops_the_shadow(small_config: ServiceConfig, small_model: ModelArtifact,
                                                     tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)
    store.set_alias("fault", "champion", "1")
    store.set_alias("fault", "challenger", "1")
    running = load_checked(store.resolve("fault", "champion").path, small_config.features, None)
    refused: list[tuple[str, str, str]] = []
    watcher = watcher_for(store, small_config, running, refused, {CHAMPION: "champion", CHALLENGER: "challenger"})
    watcher.start()
    try:
        ready = wait_until(watcher.take, 10, "the challenger")
        assert [r.role for r in ready] == [CHALLENGER]
        aliases = json.loads((store.root / "fault" / "aliases.json").read_text())
        del aliases["challenger"]
        (store.root / "fault" / "aliases.json").write_text(json.dumps(aliases))
        ready = wait_until(watcher.take, 10, "the challenger to go")
        assert [(r.role, r.scorer) for r in ready] == [(CHALLENGER, None)]
        assert refused == []
    finally:
        watcher.close()
