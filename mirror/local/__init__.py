"""Local Apache Kafka for tests, the demo and the benchmark: real brokers on loopback, test certificates."""
