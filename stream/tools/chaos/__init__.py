"""Fault injection for ``make chaos`` and the fault tests: scorers and brokers killed, and what came out checked."""

from stream.tools.chaos.processes import MODES, Outcome
from stream.tools.chaos.scenarios import broker_scenario, determinism_scenario, kill_scenario

__all__ = ["MODES", "Outcome", "broker_scenario", "determinism_scenario", "kill_scenario"]
