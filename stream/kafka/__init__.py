"""Kafka clients: the consumer (source), the producer (sink), transactions, topic admin, the Schema Registry client."""
