"""Kafka I/O and the scoring service, by concern.

``kafka`` (clients), ``avro`` (wire format), ``pipeline`` (one batch, no I/O),
``state`` (state that follows its partition), ``runtime`` (the loop and its
wiring), ``tools`` (generators, simulator, training glue, fault injection);
``cli``, ``config`` and ``exceptions`` at the top.
"""
