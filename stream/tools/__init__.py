"""Developer and operator tools: synthetic generators, the simulator, and the training glue."""
