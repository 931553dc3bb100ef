"""What key expiry costs: streamscore over one backlog with state.key_ttl_s at its default and at 0 (off).

    scripts/local-kafka with .venv/bin/python bench/expiry_cost.py [--events N] [--rounds R]

Both runs use the example config (drift and the changelog on) over the same
pre-produced backlog (make bench's: 1,000 keys, 8 partitions), in rounds
whose order alternates; the cost is the ratio within each round. Prints the
rounds and the median ratio; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import BACKLOG_EVENT_RATE, broker_with_model, measure_run, produce, say  # noqa: E402

SETUPS = {"default ttl": {}, "no ttl": {"state__key_ttl_s": 0}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    topic = f"bench-expiry-{uuid.uuid4().hex[:8]}"
    say(f"pre-producing {args.events:,} sensor events")
    produce(bootstrap, topic, args.events, event_rate=BACKLOG_EVENT_RATE)
    ratios = []
    names = list(SETUPS)
    for r in range(args.rounds):
        eps = {}
        for name in names if r % 2 == 0 else names[::-1]:
            eps[name] = measure_run(bootstrap, topic, args.events, **SETUPS[name])["throughput_eps"]
            say(f"round {r + 1}/{args.rounds}: {name} {eps[name]:,.0f} events/s")
        ratios.append(round(eps["default ttl"] / eps["no ttl"], 3))
    print(f"throughput with the default ttl / without: median {float(np.median(ratios)):.3f} (rounds {ratios})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
