"""mirror: a MirrorMaker 2.0-compatible replication service for Apache Kafka, on asyncio."""

__version__ = "0.1.0"
