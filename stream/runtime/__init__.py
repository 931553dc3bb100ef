"""The running service: the loop, its wiring, keep-alive, health and metrics, and the worker supervisor."""
