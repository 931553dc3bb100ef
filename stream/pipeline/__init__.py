"""One micro-batch from bytes to outputs, without I/O: decode, validate, features, score, drift, dead letters."""
