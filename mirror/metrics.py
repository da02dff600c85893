"""Prometheus metric definitions, in one place, on one registry. Updated per batch, never per record.

Meanings follow Java MirrorMaker 2 (docs/mm2-compat.md §6): ``topic`` is the remote (target) topic name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
lag_seconds = Gauge(
    "mirror_replication_lag_seconds",
    "Per source partition with records still to copy: now - timestamp of the last record replicated "
    "(0 when caught up); roughly how much recent data the target lacks",
    _PART,
    registry=REGISTRY,
)
heartbeat_timestamp = Gauge(
    "mirror_heartbeat_timestamp_seconds",
    "Timestamp of the newest heartbeat of an upstream cluster replicated through this flow "
    "(alert on time() - this)",
    ("source", "target", "upstream"),
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
source_topics_deleted_total = Counter(
    "mirror_source_topics_deleted",
    "Replicated source topics found deleted (their remote topics are kept unless "
    "remote.topics.delete.enabled)",
    ("source", "target"),
    registry=REGISTRY,
)
source_topics_recreated_total = Counter(
    "mirror_source_topics_recreated",
    "Replicated source topics found deleted and created again (a new topic id): copied again from their "
    "start, with nothing of the old topic's progress",
    ("source", "target"),
    registry=REGISTRY,
)
remote_topics_deleted_total = Counter(
    "mirror_remote_topics_deleted",
    "Remote topics deleted because their source topic was deleted (remote.topics.delete.enabled)",
    ("source", "target"),
    registry=REGISTRY,
)
internal_records_malformed_total = Counter(
    "mirror_internal_records_malformed",
    "Records of an internal topic mirror reads (progress, offset syncs, checkpoints, heartbeats) that "
    "cannot be read: each reported once in the log and passed over (docs/guarantees.md)",
    ("cluster", "topic"),
    registry=REGISTRY,
)
partition_halted = Gauge(
    "mirror_partition_halted",
    "1 while a source partition is halted because the target refused one of its records for good (the "
    "offset and reason are in the log and /status); records after it wait, in order. Back to 0 once the "
    "target took the record (retried with backoff)",
    _PART,
    registry=REGISTRY,
)
dead_lettered_records_total = Counter(
    "mirror_dead_lettered_records",
    "Records the target refused for good, written to the flow's dead-letter topic instead of the remote "
    "topic (rejected.records.policy=dead-letter)",
    _PART,
    registry=REGISTRY,
)
partition_paused = Gauge(
    "mirror_partition_paused",
    "1 while an operator paused a source partition (mirror pause); its progress and lag are kept",
    _PART,
    registry=REGISTRY,
)
offset_syncs_total = Counter(
    "mirror_offset_syncs", "Offset-sync records written", ("source", "target"), registry=REGISTRY
)
heartbeats_total = Counter(
    "mirror_heartbeats", "Heartbeat records written", ("source", "target"), registry=REGISTRY
)

# --- checkpoints (consumer-group offsets, docs/mm2-compat.md §5) -------------------------------------
checkpoints_total = Counter(
    "mirror_checkpoints",
    "Checkpoint records written to <source>.checkpoints.internal (acknowledged by the target)",
    ("source", "target"),
    registry=REGISTRY,
)
checkpoint_latency = Histogram(
    "mirror_checkpoint_latency_seconds",
    "now - checkpoint record timestamp when the target acknowledged it (MM2 checkpoint-latency-ms), "
    "per batch",
    ("source", "target"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
checkpoint_reread_bound = Gauge(
    "mirror_checkpoint_reread_bound_records",
    "At most this many records are seen twice by a consumer of the group failing over to the target from "
    "the latest checkpoint (0 where translation is exact; docs/mm2-compat.md §5.1); topic is the target "
    "topic",
    ("source", "target", "group", "topic", "partition"),
    registry=REGISTRY,
)
checkpoint_timestamp = Gauge(
    "mirror_checkpoint_timestamp_seconds",
    "Unix time when the group's checkpoints last matched its committed offsets (every partition translated "
    "and written, or still right): time() minus it is the age of the group's latest checkpoint",
    ("source", "target", "group"),
    registry=REGISTRY,
)
checkpoint_groups = Gauge(
    "mirror_checkpoint_groups",
    "Consumer groups of the source being checkpointed",
    ("source", "target"),
    registry=REGISTRY,
)
group_offsets_synced_total = Counter(
    "mirror_group_offsets_synced",
    "Partition offsets written into idle target consumer groups (sync.group.offsets.enabled)",
    ("source", "target"),
    registry=REGISTRY,
)

# --- the data path's clients: the replication consumer's fetcher and producer (mirror.kafka) ------------
# Counted per request or per batch (never per record), labelled by flow only: a flow's tasks on this worker
# add up. A client built without meters (a command's reader, a test) counts nowhere.

_FLOW = ("source", "target")
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

fetch_requests_total = Counter(
    "mirror_fetch_requests",
    "Fetch requests the replication consumers sent to source brokers",
    _FLOW,
    registry=REGISTRY,
)
fetch_errors_total = Counter(
    "mirror_fetch_errors",
    "Fetch errors by Kafka error name: a failed request (the broker unreachable...) counts once, a "
    "partition error of a response once per partition; each is retried (after a metadata refresh where "
    "the leader may have moved)",
    (*_FLOW, "error"),
    registry=REGISTRY,
)
fetch_buffered_bytes = Gauge(
    "mirror_fetch_buffered_bytes",
    "Bytes fetched from the source and not handed to the tasks yet (bounded by fetch.max.bytes per task): "
    "near the bound, the target side is the slow one",
    _FLOW,
    registry=REGISTRY,
)
fetch_request_seconds = Histogram(
    "mirror_fetch_request_seconds",
    "Round trip of each answered fetch request; a broker with nothing new waits up to fetch.max.wait.ms "
    "before it answers",
    _FLOW,
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
produce_requests_total = Counter(
    "mirror_produce_requests",
    "Produce requests the replication producers sent to target brokers",
    _FLOW,
    registry=REGISTRY,
)
produce_batches_total = Counter(
    "mirror_produce_batches",
    "Record batches sent in produce requests (one request carries up to one per partition of a broker; a "
    "re-sent batch counts again)",
    _FLOW,
    registry=REGISTRY,
)
produce_retries_total = Counter(
    "mirror_produce_retries",
    "Batches sent again after a retriable failure, by Kafka error name (the request failed, or the broker "
    "answered a retriable error for the batch)",
    (*_FLOW, "error"),
    registry=REGISTRY,
)
produce_merged_batches_total = Counter(
    "mirror_produce_merged_batches",
    "Batches built by merging several queued batches of one partition (over a long round trip, or of "
    'small batches; docs/record-batches.md, "Producing")',
    _FLOW,
    registry=REGISTRY,
)
produce_in_flight_batches = Gauge(
    "mirror_produce_in_flight_batches",
    "Batches in produce requests not answered yet (at most max.in.flight.requests.per.connection requests "
    "per broker); 0 at rest",
    _FLOW,
    registry=REGISTRY,
)
produce_request_seconds = Histogram(
    "mirror_produce_request_seconds",
    "Round trip of each answered produce request (acks=all: until every in-sync replica has the batches)",
    _FLOW,
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
produce_refused_batches_total = Counter(
    "mirror_produce_refused_batches",
    "Batches the target refused for good, by Kafka error name (a record too large, a policy...; the task "
    "halts or dead-letters the record, rejected.records.policy), or after which the producer cannot go on "
    "(fenced, out of sequence)",
    (*_FLOW, "error"),
    registry=REGISTRY,
)


class FetchMeters:
    """The series of one replication consumer's fetcher (`mirror.kafka.fetcher.BatchFetcher`), bound to
    its flow; ``FetchMeters()`` counts nowhere. Its share of ``mirror_fetch_buffered_bytes`` is what it
    last reported: `buffered` adds the difference, so a flow's tasks add up and a closed fetcher
    reports 0."""

    __slots__ = ("_buffered", "_flow", "_now", "_requests", "_seconds")

    def __init__(self, source: str | None = None, target: str | None = None) -> None:
        self._flow = None if source is None or target is None else (source, target)
        self._now = 0
        if self._flow is not None:
            self._requests = fetch_requests_total.labels(*self._flow)
            self._seconds = fetch_request_seconds.labels(*self._flow)
            self._buffered = fetch_buffered_bytes.labels(*self._flow)

    def request(self, seconds: float | None) -> None:
        """A fetch request was sent: answered after ``seconds``, or failed (None)."""
        if self._flow is not None:
            self._requests.inc()
            if seconds is not None:
                self._seconds.observe(seconds)

    def error(self, name: str) -> None:
        """A fetch request failed, or a partition of a response has an error: ``name`` says which."""
        if self._flow is not None:
            fetch_errors_total.labels(*self._flow, name).inc()

    def buffered(self, nbytes: int) -> None:
        """The fetcher holds ``nbytes`` fetched and not handed out now."""
        delta, self._now = nbytes - self._now, nbytes
        if delta and self._flow is not None:
            self._buffered.inc(delta)


class ProduceMeters:
    """The series of one replication producer (`mirror.kafka.producer.BatchProducer`), bound to its flow;
    ``ProduceMeters()`` counts nowhere."""

    __slots__ = ("_batches", "_flow", "_in_flight", "_merged", "_requests", "_seconds")

    def __init__(self, source: str | None = None, target: str | None = None) -> None:
        self._flow = None if source is None or target is None else (source, target)
        if self._flow is None:
            return
        self._requests = produce_requests_total.labels(*self._flow)
        self._batches = produce_batches_total.labels(*self._flow)
        self._in_flight = produce_in_flight_batches.labels(*self._flow)
        self._seconds = produce_request_seconds.labels(*self._flow)
        self._merged = produce_merged_batches_total.labels(*self._flow)

    def sent(self, batches: int) -> None:
        """A produce request carrying ``batches`` batches was sent."""
        if self._flow is not None:
            self._requests.inc()
            self._batches.inc(batches)
            self._in_flight.inc(batches)

    def done(self, batches: int, seconds: float | None) -> None:
        """A produce request of ``batches`` batches ended: answered after ``seconds``, or failed (None)."""
        if self._flow is not None:
            self._in_flight.dec(batches)
            if seconds is not None:
                self._seconds.observe(seconds)

    def merged(self) -> None:
        """A batch was built of several queued ones."""
        if self._flow is not None:
            self._merged.inc()

    def retried(self, error: str) -> None:
        """A batch goes again after a retriable ``error``."""
        if self._flow is not None:
            produce_retries_total.labels(*self._flow, error).inc()

    def refused(self, error: str) -> None:
        """The target refused a batch for good with ``error``."""
        if self._flow is not None:
            produce_refused_batches_total.labels(*self._flow, error).inc()


# --- live state, read from the running worker at each scrape (mirror.service.http takes the snapshot) -----
# State is not an event stream: a snapshot per scrape has no stale series when a task moves to another
# worker, and the hot path never touches it.

TASK_STATES = ("starting", "running", "retrying", "stopped")
FLOW_STATES = ("starting", "retrying", "running")


def _with(states: tuple[str, ...], current: str) -> tuple[str, ...]:
    return states if current in states else (*states, current)


@dataclass(frozen=True)
class StateSnapshot:
    """What `StateCollector` exports; built on the event loop, rendered in the scrape thread."""

    tasks: Sequence[tuple[str, str, str, str]] = ()  # (source, target, task, state)
    flows: Sequence[tuple[str, str, str]] = ()  # (source, target, state)
    clusters: Sequence[tuple[str, str, str, bool]] = ()  # (source, target, cluster alias, reachable)
    ready: bool = False


class StateCollector(Collector):
    """``mirror_task_state``, ``mirror_flow_state``, ``mirror_cluster_reachable`` and ``mirror_ready``."""

    def __init__(self) -> None:
        self.snapshot = StateSnapshot()

    def describe(self) -> Iterable[Metric]:
        return self._families(StateSnapshot())

    def collect(self) -> Iterable[Metric]:
        return self._families(self.snapshot)

    @staticmethod
    def _families(snap: StateSnapshot) -> list[Metric]:
        tasks = GaugeMetricFamily(
            "mirror_task_state",
            "1 for the current state of each source task on this worker (starting, running, retrying, "
            "stopped, fenced), 0 for the others; task is the task number",
            labels=("source", "target", "task", "state"),
        )
        for source, target, task, current in snap.tasks:
            for state in _with(TASK_STATES, current):
                tasks.add_metric((source, target, task, state), 1.0 if state == current else 0.0)
        flows = GaugeMetricFamily(
            "mirror_flow_state",
            "1 for the current state of each flow on this worker (starting, retrying, running), 0 otherwise",
            labels=("source", "target", "state"),
        )
        for source, target, current in snap.flows:
            for state in _with(FLOW_STATES, current):
                flows.add_metric((source, target, state), 1.0 if state == current else 0.0)
        reachable = GaugeMetricFamily(
            "mirror_cluster_reachable",
            "1 when the last connectivity check of a cluster a flow needs succeeded, 0 when it failed",
            labels=("source", "target", "cluster"),
        )
        for source, target, cluster, up in snap.clusters:
            reachable.add_metric((source, target, cluster), 1.0 if up else 0.0)
        ready = GaugeMetricFamily(
            "mirror_ready", "1 when /readyz answers 200 (every cluster reachable, every task running)"
        )
        ready.add_metric((), 1.0 if snap.ready else 0.0)
        return [tasks, flows, reachable, ready]


state = StateCollector()
REGISTRY.register(state)
