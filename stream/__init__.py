"""Kafka I/O and the scoring service: config, codec, source, sink, dead letters, simulator, CLI."""
