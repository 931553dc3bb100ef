"""streamscore beside a Quix Streams 3.x application doing the same job, on the same backlog, in interleaved rounds.

    make bench-peer     # or: scripts/local-kafka with .venv/bin/python bench/peer.py --peer-python .venv-peer/bin/python

The backlog is make bench's: demo sensor events of 1,000 keys over 8
partitions, event times spaced as a 5,000 events/s stream. Each round runs
streamscore (the example config: drift, the state changelog, at-least-once)
and the Quix application (bench/peers/quix_scorer.py: the same features by
the same code, the same trained model, one prediction per event in the same
format), each in a child process from the backlog's start, in alternating
order. Both time from their first event to their last prediction
acknowledged. Then the scores of the last round's outputs are compared,
source (partition, offset) by source.

Writes bench/results/peer.json: streamscore_eps and quix_eps (medians over
the rounds), ratio (the median of the per-round ratios), and the rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import (  # noqa: E402
    BACKLOG_EVENT_RATE,
    MODEL,
    PARTITIONS,
    RESULTS,
    broker_with_model,
    measure_run,
    produce,
    say,
)
from stream.kafka.admin import ensure_topics  # noqa: E402
from stream.tools.chaos.processes import Scored, read_all, scores_by_source  # noqa: E402

PEER = ROOT / "bench" / "peers" / "quix_scorer.py"


def quix_run(python: str, bootstrap: str, topic: str, output: str, events: int) -> dict[str, Any]:
    """The Quix application over the backlog, from the start, in a child; its JSON line."""
    ensure_topics({"bootstrap.servers": bootstrap}, {output: PARTITIONS})  # as streamscore creates its own
    proc = subprocess.run([python, str(PEER), bootstrap, topic, output, f"{output}-group", str(events), str(MODEL)],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the Quix application failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(ours: dict[tuple[int, int], list[Scored]], theirs: dict[tuple[int, int], list[Scored]]) -> dict[str, Any]:
    """How the two runs' scores agree, source by source (each source's first prediction)."""
    common = sorted(set(ours) & set(theirs))
    a = np.array([ours[s][0][0] for s in common])
    b = np.array([theirs[s][0][0] for s in common])
    return {"sources_streamscore": len(ours), "sources_quix": len(theirs), "compared": len(common),
            "identical": int(np.sum(a == b)), "max_abs_difference": float(np.max(np.abs(a - b))) if common else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="the Python of an environment with quixstreams")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    version = subprocess.run([args.peer_python, "-c", "import quixstreams; print(quixstreams.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    topic = f"bench-peer-{uuid.uuid4().hex[:8]}"
    say(f"pre-producing {args.events:,} sensor events to {topic}; Quix Streams {version}")
    produce(bootstrap, topic, args.events, event_rate=BACKLOG_EVENT_RATE)
    rounds = []
    outputs: dict[str, str] = {}
    for r in range(1, args.rounds + 1):
        eps: dict[str, float] = {}
        order = ("streamscore", "quix") if r % 2 else ("quix", "streamscore")
        for name in order:
            output = f"{topic}-{name}-{r}"
            started = time.monotonic()
            if name == "streamscore":
                run = measure_run(bootstrap, topic, args.events, kafka__output_topic=output)
                eps[name] = float(run["throughput_eps"])
            else:
                eps[name] = float(quix_run(args.peer_python, bootstrap, topic, output, args.events)["eps"])
            outputs[name] = output
            say(f"round {r}/{args.rounds}: {name} {eps[name]:,.0f} events/s ({time.monotonic() - started:.0f}s)")
        rounds.append({**{f"{n}_eps": eps[n] for n in eps}, "ratio": round(eps["streamscore"] / eps["quix"], 3)})
    say("comparing the last round's scores, source by source")
    agreement = compare(*(scores_by_source(read_all(bootstrap, outputs[n])) for n in ("streamscore", "quix")))
    result = {
        "events": args.events, "quixstreams": version,
        "streamscore_eps": float(np.median([r["streamscore_eps"] for r in rounds])),
        "quix_eps": float(np.median([r["quix_eps"] for r in rounds])),
        "ratio": float(np.median([r["ratio"] for r in rounds])),
        "rounds": rounds, "scores": agreement,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"streamscore {result['streamscore_eps']:,.0f} events/s, Quix Streams {version} {result['quix_eps']:,.0f}: "
          f"{result['ratio']:.2f}x (median of {args.rounds} rounds: {[r['ratio'] for r in rounds]}); scores: "
          f"{agreement['identical']:,} of {agreement['compared']:,} identical, max difference "
          f"{agreement['max_abs_difference']}")
    say(f"wrote {RESULTS / 'peer.json'}")
    same = agreement["compared"] == args.events and agreement["identical"] == agreement["compared"]
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
