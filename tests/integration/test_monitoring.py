"""Drift, labels and metrics on the real broker, scraped by a real Prometheus server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.runtime.service import ScoringService
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import ROOT, produce, read_topic, service_config, unique, wait_until

pytestmark = pytest.mark.integration

DRIFT_AT = 8000
# The README states this bound for the demo sensor stream with --drift-sigma 5:
# input:temperature alarms within this many events after the change.
TEMPERATURE_DELAY_BOUND = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()




def run_in_thread(service: ScoringService) -> threading.Thread:
    thread = threading.Thread(target=service.run, kwargs={"idle_exit_seconds": 120}, daemon=True)
    thread.start()
    return thread


def test_injected_drift_is_detected_after_the_change_and_not_before(kafka_bootstrap: str, small_model) -> None:
    topic = unique("drift")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "simulate", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
         "--count", "12000", "--rate", "0", "--keys", "200", "--seed", "13", "--partitions", "1",
         "--event-time", "synthetic", "--drift-at", str(DRIFT_AT), "--drift-sigma", "5"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = service_config(kafka_bootstrap, small_model.path, topic, drift__topic=topic + "-drift",
                            metrics__enabled=False)

    service = build_service(config)
    stats = service.run(max_events=12_000, idle_exit_seconds=30)

    assert stats.predictions == 12_000
    codec = AvroCodec(load_schema("drift_event"))
    events = [codec.decode(r.value) for r in read_topic(kafka_bootstrap, topic + "-drift", expected=stats.drift_alarms)]
    assert len(events) == stats.drift_alarms > 0
    assert all(e["offset"] >= DRIFT_AT for e in events), [(e["signal"], e["offset"]) for e in events]
    temperature = [e for e in events if e["signal"] == "input:temperature"]
    assert temperature, "the shifted field raised no alarm"
    assert temperature[0]["offset"] - DRIFT_AT <= TEMPERATURE_DELAY_BOUND
    assert temperature[0]["mean_after"] > temperature[0]["mean_before"]
    assert all(e["model_name"] == "sensor-fault" and e["topic"] == topic and e["partition"] == 0 for e in events)
    counted = service.metrics.registry.get_sample_value(
        "streamscore_drift_alarms_total", {"signal": "input:temperature", "detector": "adwin"})
    assert counted == len(temperature)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "Prometheus is not installed (make test installs Debian's 'prometheus' package where it can)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_prometheus_scrapes_counters_labels_and_health(
    kafka_bootstrap: str, small_model, prometheus_binary: str, tmp_path: Path
) -> None:
    topic = unique("metrics")
    labels_topic = topic + "-labels"
    metrics_port, prom_port = free_port(), free_port()
    pairs = list(sensor_events(3000, 30, seed=17))
    positions = produce(kafka_bootstrap, topic, [r for r, _ in pairs], partitions=2)
    produce_labels_topic = {"bootstrap.servers": kafka_bootstrap}
    from stream.kafka.admin import ensure_topics

    ensure_topics(produce_labels_topic, {labels_topic: 1})
    config = service_config(
        kafka_bootstrap, small_model.path, topic, metrics__port=metrics_port, metrics__host="127.0.0.1",
        labels__topic=labels_topic, labels__cache_size=5000, drift__topic=topic + "-drift",
    )
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: streamscore\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom = subprocess.Popen(
        [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    service = build_service(config)
    thread = run_in_thread(service)
    try:
        base = f"http://127.0.0.1:{metrics_port}"
        assert wait_until(lambda: http_get(base + "/healthz")[0] == 200, 30, "/healthz")
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 60, "/readyz to turn ready")
        assert json.loads(http_get(base + "/readyz")[1]) == {
            "model_loaded": True, "partitions_assigned": True, "broker_reachable": True,
            "schema_registry_reachable": True, "model_store_reachable": True}
        wait_until(lambda: service.stats.predictions >= 3000, 60, "all predictions")

        # labels: the first 2,000 events by (topic/partition/offset) id, the truth from the generator,
        # plus 50 labels for events that were never scored
        encoder = AvroEncoder(load_schema("label"))
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for (partition, offset), (_record, truth) in list(zip(positions, pairs))[:2000]:
            producer.produce(labels_topic, encoder.encode(
                {"id": f"{topic}/{partition}/{offset}", "label": str(truth), "label_time": 1_700_000_000_000}))
        for i in range(50):
            producer.produce(labels_topic, encoder.encode({"id": f"{topic}/9/{i}", "label": "1", "label_time": 0}))
        assert producer.flush(10) == 0

        def query(expr: str) -> float | None:
            status, body = http_get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={urllib.parse.quote(expr)}")
            result = json.loads(body)["data"]["result"] if status == 200 else []
            return float(result[0]["value"][1]) if result else None

        wait_until(lambda: query('streamscore_labels_total{outcome="joined"}') == 2000, 60, "Prometheus to see the labels")
        assert query("streamscore_predictions_produced_total") == 3000
        assert query("sum(streamscore_events_consumed_total)") == 3000
        assert query(f'streamscore_events_consumed_total{{topic="{topic}"}}') == 3000
        assert query('streamscore_labels_total{outcome="unmatched"}') == 50
        assert query("streamscore_batch_size_count") == service.stats.batches
        assert query("streamscore_end_to_end_latency_seconds_count") == 3000
        assert query("sum(streamscore_consumer_lag)") == 0
        # everything scored is committed: the committed lag of every input partition comes down to 0
        wait_until(lambda: query(f'max(streamscore_consumer_committed_lag{{topic="{topic}"}})') == 0, 30,
                   "the committed lag to reach 0")
        assert query(f'count(streamscore_consumer_committed_lag{{topic="{topic}"}})') == 2
        assert query('streamscore_model_info{name="sensor-fault"}') == 1
        accuracy = query('streamscore_online_metric{metric="accuracy"}')
        assert accuracy is not None and 0.8 < accuracy <= 1.0
        assert query('streamscore_online_metric{metric="roc_auc"}') is not None
        # 3,000 cached (the limit is 5,000), 2,000 joined and gone, none evicted yet
        assert query("streamscore_predictions_unlabelled_total") == 0
        assert query("streamscore_label_cache_size") == 1000
    finally:
        service.stop()
        thread.join(30)
        prom.terminate()
        prom.wait(10)
    assert not thread.is_alive()
