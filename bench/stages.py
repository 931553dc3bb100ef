"""Where a backlog's time goes: the scoring loop's thread CPU per stage, per event, without a profiler.

Runs the service in this process (the sensor example's defaults) over a
backlog of demo sensor events, produced first with a live stream's event
spacing as `make bench` produces it, and times each stage with the loop
thread's CPU clock and the wall clock. cProfile, used before, slows Python
calls more than compiled code and so overstated the Python stages.

    scripts/local-kafka with .venv/bin/python bench/stages.py [EVENTS] [--keys N]

``--keys`` spreads the backlog over that many keys (default 1,000, as
``make bench``): over a million, nearly every event changes a key nothing
else changed since the last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import (  # noqa: E402
    BACKLOG_EVENT_RATE,
    CONFIG,
    KEYS,
    broker_with_model,
    delete_topics,
    env_for,
    produce,
)
from stream.config import load_config  # noqa: E402
from stream.runtime.wiring import build_service  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=KEYS)
    args = parser.parse_args(argv)
    events = args.events
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    topic = f"stages-{uuid.uuid4().hex[:6]}"
    print(f"stages: producing {events:,} events over {args.keys:,} keys to {topic}", file=sys.stderr, flush=True)
    produce(bootstrap, topic, events, event_rate=BACKLOG_EVENT_RATE, keys=args.keys)
    service = build_service(load_config(CONFIG, {**os.environ, **env_for(bootstrap, topic, topic)}))
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    processor = service.processor
    stages: list[tuple[Any, str, str]] = [
        (service.source, "poll_batch", "consume"), (processor.decoder, "decode", "decode"),
        (processor.validator, "check", "validate"), (processor, "_clocks", "partition clocks (expiry)"),
        (processor, "_features", "window features"),
        (processor, "_score", "model call"), (processor, "_encode", "encode predictions"),
        (service, "_send", "produce"), (service.sink, "flush", "flush"), (service.source, "commit", "commit"),
        (service.state, "maybe_checkpoint", "checkpoints and expiry sweeps"),
        (service.state.store, "export_dirty", "  of which: export of changed keys"),
        (service.state.store, "expire", "  of which: expiry sweeps"), (service, "_record_metrics", "metrics"),
        (processor, "process", "batch processing (decode to drift detectors)"),
    ]
    if processor.quality is not None:
        stages.append((processor.quality, "observe", "drift detectors"))
    for owner, name, label in stages:
        setattr(owner, name, _timed(getattr(owner, name), label, cpu, wall))
    print("stages: scoring", file=sys.stderr, flush=True)
    started_cpu, started = time.thread_time(), time.perf_counter()
    try:
        stats = service.run(max_events=events, idle_exit_seconds=10)
        loop_cpu, loop_wall = time.thread_time() - started_cpu, time.perf_counter() - started
    finally:
        # A state topic left behind is compacted by the broker during the runs that follow (a run
        # over a million keys writes about a gigabyte of it), slowing them; the backlog and outputs go too.
        kafka = service.config.kafka
        delete_topics(bootstrap, [topic, kafka.output_topic, kafka.dead_letter_topic, service.config.drift.topic,
                                  service.config.state_topic])
    n = stats.consumed
    summary = stats.summary()
    print(f"{n:,} events at {summary['throughput_eps']:,.0f} events/s (first consumed to last acknowledged); "
          f"loop thread {loop_cpu / n * 1e6:.2f} us CPU and {loop_wall / n * 1e6:.2f} us wall per event")
    print(f"{'stage':50s} {'CPU us/event':>12s} {'wall us/event':>13s}")
    for label in sorted(cpu, key=lambda k: -cpu[k]):
        print(f"{label:50s} {cpu[label] / n * 1e6:>12.2f} {wall[label] / n * 1e6:>13.2f}")
    return 0


def _timed(fn: Callable[..., Any], label: str, cpu: dict[str, float], wall: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        c, w = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time() - c
            wall[label] += time.perf_counter() - w
    return timed


if __name__ == "__main__":
    sys.exit(main())
