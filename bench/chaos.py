"""Fault scenarios on a real broker, in both delivery modes: `make chaos`.

    scripts/local-kafka with .venv/bin/python bench/chaos.py [--events N] [--kills K] [--determinism-events N]

Runs the scenarios of ``stream.tools.chaos`` (scorer kills, a broker kill
and restart, 1 -> 3 -> 2 workers against one) and writes
bench/results/chaos.json (per mode and scenario: inputs, outputs, lost,
duplicates, scorer kills, broker restarts, whether per-key order held). The
integration tests in tests/integration/test_faults.py and test_state.py run
the same scenarios and assert on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import MODEL, broker_with_model  # noqa: E402
from stream.tools.chaos import MODES, Outcome, broker_scenario, determinism_scenario, kill_scenario  # noqa: E402
from stream.tools.chaos.processes import say  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--broker-events", type=int, default=50_000)
    parser.add_argument("--determinism-events", type=int, default=50_000)
    args = parser.parse_args(argv)
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    model = MODEL
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        say(f"{mode}: {args.events:,} events, {args.kills} scorer kills")
        kills = kill_scenario(bootstrap, mode, model, args.events, args.kills)
        say(f"{mode}: {_line(kills)}")
        say(f"{mode}: {args.broker_events:,} events, one broker kill and restart")
        broker = broker_scenario(mode, model, args.broker_events)
        say(f"{mode}: {_line(broker)}")
        results[mode] = {"kills": asdict(kills), "broker": asdict(broker)}
    say(f"exactly_once: {args.determinism_events:,} events, 1 -> 3 -> 2 workers (one SIGKILLed) against one worker")
    determinism = determinism_scenario(bootstrap, model, args.determinism_events)
    say(f"exactly_once: {_line(determinism)}")
    results["exactly_once"]["determinism"] = asdict(determinism)
    summary = {**results, "determinism_mismatches": determinism.determinism_mismatches,
               "restore_seconds": determinism.restore_seconds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"wrote {RESULTS / 'chaos.json'}")
    bad = [f"{m}/{s}" for m, r in results.items() for s, o in r.items()
           if o["lost"] or not o["order_held"] or (m == "exactly_once" and o["duplicates"])]
    if determinism.determinism_mismatches:
        bad.append("exactly_once/determinism")
    if bad:
        say(f"guarantee broken in: {', '.join(bad)}")
        return 1
    return 0


def _line(o: Outcome) -> str:
    return (f"{o.scenario}: inputs {o.inputs:,}, outputs {o.outputs:,}, lost {o.lost}, duplicates {o.duplicates}, "
            f"kills {o.scorer_kills}, broker restarts {o.broker_restarts}, order held {o.order_held}, "
            f"not ready seen {o.not_ready_seen}, determinism mismatches {o.determinism_mismatches}, "
            f"restores {o.restore_seconds} s, {o.seconds:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
