"""Prometheus metric definitions, in one place, on one registry. Updated per batch, never per record.

Meanings follow Java MirrorMaker 2 (reference mm2.md §6): ``topic`` is the remote (target) topic name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_PART = ("source", "target", "topic", "partition")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)

records_total = Counter(
    "mirror_records", "Records replicated (acknowledged by the target)", _PART, registry=REGISTRY
)
bytes_total = Counter(
    "mirror_bytes", "Record value bytes replicated (MM2 byte-count)", _PART, registry=REGISTRY
)
batches_total = Counter(
    "mirror_batches", "Target batches acknowledged", ("source", "target"), registry=REGISTRY
)
record_age = Histogram(
    "mirror_record_age_seconds",
    "Age of the newest record of each fetched batch when read from the source (now - record timestamp)",
    ("source", "target"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
replication_latency = Histogram(
    "mirror_replication_latency_seconds",
    "now - record timestamp when the target acknowledged (newest record of each batch)",
    ("source", "target"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
lag_records = Gauge(
    "mirror_replication_lag_records",
    "Source high watermark minus the next offset to replicate, per source partition",
    _PART,
    registry=REGISTRY,
)
topics_mirrored = Gauge(
    "mirror_topics", "Source topics being mirrored per flow", ("source", "target"), registry=REGISTRY
)
partitions_mirrored = Gauge(
    "mirror_partitions", "Source partitions being mirrored per flow", ("source", "target"), registry=REGISTRY
)
errors_total = Counter(
    "mirror_errors", "Errors by kind (retried unless fatal)", ("source", "target", "kind"), registry=REGISTRY
)
task_restarts_total = Counter(
    "mirror_task_restarts", "Task sessions restarted after an error", ("source", "target"), registry=REGISTRY
)
truncated_records_total = Counter(
    "mirror_source_truncated_records",
    "Records deleted on the source (retention) before they could be replicated: data loss to investigate",
    ("source", "target", "topic", "partition"),
    registry=REGISTRY,
)
offset_syncs_total = Counter(
    "mirror_offset_syncs", "Offset-sync records written", ("source", "target"), registry=REGISTRY
)
heartbeats_total = Counter(
    "mirror_heartbeats", "Heartbeat records written", ("source", "target"), registry=REGISTRY
)
