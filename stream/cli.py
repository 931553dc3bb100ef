"""The ``streamscore`` command: run, train, simulate, models.

Exit codes: 0 done (also after SIGTERM/SIGINT), 1 a fatal error while
running (nothing uncommitted is lost: it is read again on restart), 2 a bad
configuration, model artifact or command line at start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import faulthandler
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from features import FeatureError
from models import ModelError
from stream.config import ServiceConfig, load_config
from stream.exceptions import ConfigError, StreamError

__all__ = ["main"]

logger = logging.getLogger("streamscore")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_STARTUP = 2
# Where synthetic event times start by default (2023-11-14): fixed, so a seeded run is the same run.
SYNTHETIC_START_MS = 1_700_000_000_000


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamscore`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    worker = getattr(args, "worker_index", None)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s " + (f"worker-{worker} " if worker is not None else "") + "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config, os.environ, _overrides(args)) if args.config else None
        if config is not None:
            logging.getLogger().setLevel(config.log_level)
        return int(args.func(args, config))
    except (ConfigError, ModelError, FeatureError) as exc:
        print(f"streamscore: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except StreamError as exc:
        logger.error("fatal: %s", exc)
        return EXIT_FATAL


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The configuration keys set by ``run``'s flags; they win over the file and the environment."""
    kafka: dict[str, Any] = {}
    if getattr(args, "input_topic", None):
        kafka["input_topics"] = [t for value in args.input_topic for t in value.split(",") if t]
    if getattr(args, "output_topic", None):
        kafka["output_topic"] = args.output_topic
    if getattr(args, "group", None):
        kafka["group_id"] = args.group
    overrides: dict[str, dict[str, Any]] = {"kafka": kafka} if kafka else {}
    if getattr(args, "model", None):
        overrides["model"] = {"path": args.model}
    return overrides


def _run(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    from stream.runtime.wiring import build_service

    assert config is not None
    if not config.kafka.input_topics:
        raise ConfigError("kafka.input_topics is empty: name the topics to score")
    if args.workers > 1:
        return _run_workers(args, config)
    service = build_service(config)

    timeout_s = config.processing.shutdown_timeout_s

    def give_up() -> None:
        logger.error("not stopped within processing.shutdown_timeout_s (%.0fs): exiting; "
                     "the uncommitted batch is scored again by the next owner", timeout_s)
        os._exit(EXIT_FATAL)

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("%s: finishing the current batch, then stopping (at most %.0fs)",
                    signal.Signals(signum).name, timeout_s)
        if not service.stopping:
            watchdog = threading.Timer(timeout_s, give_up)
            watchdog.daemon = True
            watchdog.start()
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where is a stuck process?
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stats = service.run(max_events=args.max_events, idle_exit_seconds=args.idle_exit_seconds)
    summary = stats.summary()
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    if args.latencies:
        Path(args.latencies).write_bytes(stats.latencies_ms.tobytes())
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def _run_workers(args: argparse.Namespace, config: ServiceConfig) -> int:
    from stream.runtime.workers import supervise

    single = [flag for flag, value in (("--max-events", args.max_events), ("--summary-json", args.summary_json),
                                       ("--latencies", args.latencies)) if value]
    if single:
        raise ConfigError(f"{', '.join(single)} apply to one process; leave them out with --workers")
    command = [sys.executable, "-m", "stream.cli", "run", "--config", str(args.config)]
    for flag in ("input_topic", "output_topic", "group", "model"):
        value = getattr(args, flag)
        if value:
            values = value if isinstance(value, list) else [value]
            command += [arg for v in values for arg in (f"--{flag.replace('_', '-')}", v)]
    if args.idle_exit_seconds is not None:
        command += ["--idle-exit-seconds", str(args.idle_exit_seconds)]
    return supervise(command, os.environ, config, args.workers)


def _train(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    from stream.tools.dataset import StreamRange
    from stream.tools.train import train_from_config, train_from_topics

    assert config is not None
    if args.out is None and args.register is None:
        raise ConfigError("train needs --out (the artifact folder to write), --register (a store model), or both")
    if args.if_needed and args.out is not None:
        from models import ModelArtifact, ModelLoadError

        try:
            current = ModelArtifact.load(Path(args.out), config.features, config.schema_fingerprint)
        except ModelLoadError as exc:
            logger.info("training: %s", exc)
        else:
            print(json.dumps({"model": current.name, "version": current.version, "path": str(current.path),
                              "up_to_date": True}), flush=True)
            return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="streamscore-train-") as scratch:
        out = Path(args.out) if args.out is not None else Path(scratch) / "model"
        if args.from_topics:
            span = StreamRange(args.from_offset, args.to_offset, _time_ms(args.from_time), _time_ms(args.to_time))
            artifact = train_from_topics(config, span, out)
        else:
            artifact = train_from_config(config, out)
        summary: dict[str, Any] = {"model": artifact.name, "version": artifact.version, "path": str(artifact.path),
                                   "metrics": artifact.manifest["metrics"]}
        if args.register is not None:
            from models.store import open_store

            store = open_store(args.store)
            stored = store.register(args.register, out)
            if args.alias:
                store.set_alias(args.register, args.alias, stored.version)
            summary.update(model=stored.model, version=stored.version, path=str(stored.path),
                           aliases=store.aliases(stored.model))
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def _time_ms(text: str | None) -> int | None:
    """Epoch milliseconds from a number of milliseconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is neither epoch milliseconds nor an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _simulate(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    from schemas import load_schema
    from stream.avro.codec import AvroEncoder
    from stream.config import SimulatorConfig
    from stream.kafka.admin import admin_settings, ensure_topics
    from stream.kafka.registry import RegistrySchemaSource
    from stream.tools.generators import KEY_FIELDS, SCHEMAS, generate
    from stream.tools.simulator import produce_events

    sim = config.simulator if config else SimulatorConfig()
    kind = args.kind or sim.kind
    if args.replay and kind != "market":
        raise ConfigError("--replay sp500 replays market ticks: use it with --kind market")
    if args.replay:
        kind = "sp500"
    if args.event_rate is not None and args.event_rate <= 0:
        raise ConfigError(f"--event-rate must be > 0 events/s, got {args.event_rate}")
    keys = args.keys if args.keys is not None else sim.keys
    rate = args.rate if args.rate is not None else sim.rate
    seed = args.seed if args.seed is not None else sim.seed
    partitions = args.partitions if args.partitions is not None else sim.partitions
    bootstrap = args.bootstrap_servers or (config.kafka.bootstrap_servers if config else None) \
        or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise ConfigError("no broker: pass --bootstrap-servers, --config, or set KAFKA_BOOTSTRAP_SERVERS")
    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, **(config.kafka.producer if config else {})}
    schema = load_schema(SCHEMAS[kind])
    wire = config.codec.format if config else "raw"
    schema_id = None
    if wire == "confluent":
        assert config is not None and config.codec.schema_registry_url
        registry = RegistrySchemaSource(config.codec.schema_registry_url, config.codec.schema_registry)
        schema_id = registry.register(f"{args.topic}-value", schema)
    ensure_topics({"bootstrap.servers": bootstrap, **admin_settings(settings)}, {args.topic: partitions})
    spacing = args.event_rate if args.event_rate is not None else (rate if rate > 0 else 1000.0)
    start_ms = args.start_ms
    if args.backlog:
        # As fast as possible, with the event times of a live stream at `spacing` events/s that ends now.
        rate = 0.0
        if start_ms is None:
            start_ms = int(time.time() * 1000 - args.count * 1000 / spacing)
    elif args.event_time == "live":
        start_ms = None
    elif start_ms is None:
        start_ms = SYNTHETIC_START_MS
    events = generate(kind, args.count, keys, seed, spacing, start_ms, args.drift_at, args.drift_sigma)
    result = produce_events(
        settings, args.topic, events, AvroEncoder(schema, wire, schema_id), KEY_FIELDS[kind],
        rate=rate, total=args.count, bad_every=args.bad_every,
    )
    print(json.dumps({"produced": result.produced, "seconds": round(result.seconds, 3), "topic": args.topic}), flush=True)
    return EXIT_OK


def _models(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    """``streamscore models ...``: versions and aliases in a model store."""
    from models.store import open_store

    if args.action == "compare":
        return _compare(args, config)
    store = open_store(args.store)
    if args.action == "list":
        names = [args.model] if args.model else store.models()
        for name in names:
            aliases: dict[str, list[str]] = {}
            for alias, version in store.aliases(name).items():
                aliases.setdefault(version, []).append(alias)
            for v in store.versions(name):
                shown = ", ".join(sorted(aliases.get(v.version, [])))
                print(f"{name}\t{v.version}\t{str(v.manifest.get('sha256', ''))[:12]}\t{shown}")
        return EXIT_OK
    if args.action == "register":
        stored = store.register(args.model, Path(args.path), args.version)
    elif args.action == "alias":
        stored = store.set_alias(args.model, args.alias, args.version)
    elif args.action == "promote":
        stored = store.promote(args.model, args.source, args.target)
    else:
        stored = store.rollback(args.model, args.alias)
    print(json.dumps({"model": stored.model, "version": stored.version, "path": str(stored.path),
                      "aliases": store.aliases(stored.model)}), flush=True)
    return EXIT_OK


def _compare(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    """``streamscore models compare``: champion and challenger on the labels that arrived."""
    from stream.tools.compare import compare, plot_comparison, read_outcomes

    assert config is not None
    if config.model.shadow_topic is None:
        logger.warning("model.shadow_topic is not set: only the champion's output is compared")
    champion, challenger, truth = read_outcomes(config)
    task = "classification" if any(o.label is not None for o in champion.values()) else "regression"
    result = compare(champion, challenger, truth, task)
    print(result.table(), flush=True)
    if args.png:
        plot_comparison(champion, challenger, truth, Path(args.png), task)
        print(f"wrote {args.png}", flush=True)
    return EXIT_OK


def _state(args: argparse.Namespace, config: ServiceConfig | None) -> int:
    """`state estimate`: the window bytes per key of the configured spec, the floor beside the store's layout."""
    from features.footprint import estimate

    assert config is not None
    footprint = estimate(config.features, args.rate)
    rows = [("window", "events held", "floor B/key", "layout B/key", "ring")]
    rows += [(w.name, f"{w.held:,}", f"{w.floor_bytes:,}", f"{w.layout_bytes:,}", f"{w.ring:,}")
             for w in footprint.windows]
    rows.append(("all", "", f"{footprint.floor_bytes:,}", f"{footprint.layout_bytes:,}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                        enumerate(zip(row, widths))))
    print(f"{args.keys:,} keys at {args.rate:g} events/s each: floor {footprint.floor_bytes * args.keys / 2**20:,.0f} "
          f"MiB, window arrays {footprint.layout_bytes * args.keys / 2**20:,.0f} MiB "
          f"({footprint.over_floor:.2f}x the floor: each ring is rounded up to a size class and holds the next "
          "event too, and each key keeps its positions; the key index is not counted)")
    return EXIT_OK


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamscore", description="Score Kafka events with a model, in micro-batches.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="join the consumer group and score the input topics")
    run.add_argument("--config", required=True, help="TOML configuration file")
    run.add_argument("--input-topic", action="append", metavar="TOPIC",
                     help="score this topic (repeat, or separate with commas); overrides kafka.input_topics")
    run.add_argument("--output-topic", help="produce predictions here; overrides kafka.output_topic")
    run.add_argument("--group", help="consumer group; overrides kafka.group_id")
    run.add_argument("--model", help="model artifact directory; overrides model.path")
    run.add_argument("--max-events", type=int, help="stop after this many input events")
    run.add_argument("--idle-exit-seconds", type=float, help="stop after this long without input")
    run.add_argument("--summary-json", help="also write the run summary to this file")
    run.add_argument("--workers", type=_positive, default=1,
                     help="run this many scorer processes in one consumer group (default 1)")
    run.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by --workers for each child
    run.add_argument("--latencies", help="write each prediction's end-to-end latency to this file "
                                         "(float64 ms, native byte order, in acknowledgement order)")
    run.set_defaults(func=_run)

    train = sub.add_parser("train", help="train a model on features computed by the service's own code")
    train.add_argument("--config", required=True, help="TOML configuration file ([features] and [training])")
    train.add_argument("--out", help="model directory to write")
    train.add_argument("--if-needed", action="store_true",
                       help="keep the model in --out if it loads and its features match the config")
    train.add_argument("--from-topics", action="store_true",
                       help="train on the input topics joined with labels.topic, features by the scorer's code "
                            "(instead of [training] source)")
    train.add_argument("--from-offset", type=int, help="--from-topics: first offset of every input partition")
    train.add_argument("--to-offset", type=int, help="--from-topics: stop before this offset in every partition")
    train.add_argument("--from-time", help="--from-topics: first event time (epoch ms or ISO 8601)")
    train.add_argument("--to-time", help="--from-topics: stop before this event time (epoch ms or ISO 8601)")
    train.add_argument("--register", metavar="MODEL", help="register the trained artifact as a new version of MODEL")
    train.add_argument("--store", default="artifacts/store", help="--register: the store (a folder or an MLflow URI)")
    train.add_argument("--alias", help="--register: point this alias (say, challenger) at the new version")
    train.set_defaults(func=_train)

    sim = sub.add_parser("simulate", help="produce seeded synthetic events (or a replay of SP500Stocks)")
    sim.add_argument("--config", help="TOML configuration file: broker, wire format and [simulator] defaults")
    sim.add_argument("--kind", choices=("sensor", "market"),
                     help="the events to make (default: [simulator] kind of --config, else sensor)")
    sim.add_argument("--replay", choices=("sp500",), help="market only: replay river's bundled SP500Stocks returns")
    sim.add_argument("--topic", required=True)
    sim.add_argument("--count", type=int, required=True)
    sim.add_argument("--rate", type=float, help="events per second; 0 for as fast as possible")
    sim.add_argument("--keys", type=int, help="number of distinct entities")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--drift-at", type=int, help="event index from which the means shift")
    sim.add_argument("--drift-sigma", type=float, default=1.0, help="size of the shift, in noise standard deviations")
    sim.add_argument("--partitions", type=int, help="partitions of the topic if it is created")
    sim.add_argument("--event-time", choices=("live", "synthetic"), default="live",
                     help="live: the wall clock when produced; synthetic: --start-ms plus 1/--event-rate per event")
    sim.add_argument("--start-ms", type=int,
                     help=f"synthetic event times start here (default {SYNTHETIC_START_MS}; with --backlog, "
                          "so that the last event is about now)")
    sim.add_argument("--event-rate", type=float,
                     help="synthetic event times: spaced as for this many events/s (default --rate, or 1000 "
                          "when --rate is 0), so a backlog produced as fast as possible keeps a live stream's spacing")
    sim.add_argument("--backlog", action="store_true",
                     help="produce as fast as possible, with synthetic event times spaced as a live stream of "
                          "--event-rate (or the rate) events/s ending now: a backlog for the scorer to catch up on")
    sim.add_argument("--bad-every", type=int, default=0, help="replace every Nth event by bytes that are not Avro")
    sim.add_argument("--bootstrap-servers")
    sim.set_defaults(func=_simulate)

    models = sub.add_parser("models", help="versions and aliases in a model store")
    models.add_argument("--store", default="artifacts/store",
                        help="the store: a folder (default artifacts/store), or an MLflow tracking URI (http://...)")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every version, its sha256 and its aliases")
    listing.add_argument("model", nargs="?", help="one model only")
    register = actions.add_parser("register", help="copy an artifact in as a new, immutable version")
    register.add_argument("model")
    register.add_argument("path", help="an artifact folder (streamscore train --out)")
    register.add_argument("--version", help="the version's name (default: the next number)")
    alias = actions.add_parser("alias", help="point an alias at a version")
    alias.add_argument("model")
    alias.add_argument("alias")
    alias.add_argument("version")
    promote = actions.add_parser("promote", help="point the champion alias at the challenger's version")
    promote.add_argument("model")
    promote.add_argument("--source", default="challenger")
    promote.add_argument("--target", default="champion")
    rollback = actions.add_parser("rollback", help="point an alias back at the version it named before")
    rollback.add_argument("model")
    rollback.add_argument("alias", nargs="?", default="champion")
    comparing = actions.add_parser("compare", help="champion and challenger on the labels that arrived, from the "
                                                   "prediction, shadow and labels topics")
    comparing.add_argument("--config", required=True, help="TOML configuration of the scorer")
    comparing.add_argument("--png", help="also plot the metric over event time to this PNG")
    models.set_defaults(func=_models, config=None)

    state = sub.add_parser("state", help="the window state's size")
    state_actions = state.add_subparsers(dest="action", required=True)
    sizing = state_actions.add_parser("estimate", help="bytes per key of the configured windows: the floor (held "
                                                       "events and the summaries their aggregates need) and the "
                                                       "store's layout")
    sizing.add_argument("--config", required=True, help="TOML configuration of the scorer")
    sizing.add_argument("--keys", type=_positive, default=1_000_000, help="live keys (default 1,000,000)")
    sizing.add_argument("--rate", type=_positive_float, default=5.0,
                        help="events per second of event time per key (default 5)")
    state.set_defaults(func=_state)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
