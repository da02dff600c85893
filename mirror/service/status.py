"""What a worker is doing, as one typed, immutable snapshot: `Worker.status` builds it, ``/status``,
``/readyz`` and the live state metrics (`mirror.service.http`) read it, and ``mirror status`` renders it.

The JSON of ``/status`` is a public interface: `WorkerStatus.to_json` writes it, `WorkerStatus.from_json`
reads it back (leniently: a field an older server did not send takes its default), so the document's
shape is written down once, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class HaltedPartition:
    """A source partition stopped at ``offset``, the first record the target refused for ``reason``."""

    topic: str
    partition: int
    offset: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HaltedPartition:
        return cls(
            doc.get("topic", "?"), doc.get("partition", -1), doc.get("offset", -1), doc.get("reason", "")
        )


@dataclass(frozen=True)
class TaskStatus:
    """One source task on this worker."""

    task: int
    state: str
    partitions: int = 0
    records: int = 0
    restarts: int = 0
    lag_records: int = 0
    last_error: str | None = None
    halted: tuple[HaltedPartition, ...] = ()  # sorted by (topic, partition)
    dead_lettered: int = 0  # records sent to the dead-letter topic since the task started here
    paused_partitions: int = 0  # paused by an operator (`mirror pause`)
    stuck: str | None = None  # no progress while behind (`mirror.replication.stuck`): not ready

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "state": self.state,
            "partitions": self.partitions,
            "records": self.records,
            "restarts": self.restarts,
            "lag_records": self.lag_records,
            "last_error": self.last_error,
            "halted": [halt.to_json() for halt in self.halted],
            "dead_lettered": self.dead_lettered,
            "paused_partitions": self.paused_partitions,
            "stuck": self.stuck,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TaskStatus:
        return cls(
            task=doc.get("task", -1),
            state=doc.get("state", "?"),
            partitions=doc.get("partitions", 0),
            records=doc.get("records", 0),
            restarts=doc.get("restarts", 0),
            lag_records=doc.get("lag_records", 0),
            last_error=doc.get("last_error"),
            halted=tuple(HaltedPartition.from_json(h) for h in doc.get("halted", [])),
            dead_lettered=doc.get("dead_lettered", 0),
            paused_partitions=doc.get("paused_partitions", 0),
            stuck=doc.get("stuck"),
        )


@dataclass(frozen=True)
class JobStatus:
    """One flow singleton (``heartbeat``, ``checkpoint``, ``configsync``) on this worker."""

    job: str
    last_error: str | None = None


@dataclass(frozen=True)
class ClusterStatus:
    """The last connectivity check of one cluster for one flow (``checked_at``: seconds since the epoch)."""

    reachable: bool
    error: str | None
    checked_at: float

    def to_json(self) -> dict[str, Any]:
        return {"reachable": self.reachable, "error": self.error, "checked_at": self.checked_at}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ClusterStatus:
        return cls(bool(doc.get("reachable")), doc.get("error"), doc.get("checked_at", 0.0))


@dataclass(frozen=True)
class TopicLag:
    """Records still to copy of one source topic, summed over its partitions on this worker."""

    remote: str
    partitions: int
    lag_records: int
    paused: bool = False  # an operator paused the topic (`mirror pause`)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "partitions": self.partitions,
            "lag_records": self.lag_records,
            "paused": self.paused,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TopicLag:
        return cls(
            doc.get("remote", ""),
            doc.get("partitions", 0),
            doc.get("lag_records", 0),
            bool(doc.get("paused")),
        )


@dataclass(frozen=True)
class PausedTopics:
    """An operator's pause: the flow's topics matching ``topics`` (a regex), paused by ``by`` at ``at``."""

    topics: str
    by: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"topics": self.topics, "by": self.by, "at": self.at}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PausedTopics:
        return cls(doc.get("topics", "?"), doc.get("by", "?"), doc.get("at", 0.0))


@dataclass(frozen=True)
class TopicEvent:
    """What became of a replicated source topic: ``deleted``, ``re-created`` (a new topic id) or ``remote
    deleted``; ``at``: when the flow saw it, ``remote_delete_at``: when its remote topic is due to be
    deleted (``remote.topics.delete.enabled``), both in seconds since the epoch."""

    change: str
    at: float
    remote: str
    topic_id: str | None = None
    remote_delete_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "at": self.at,
            "remote": self.remote,
            "topic_id": self.topic_id,
            "remote_delete_at": self.remote_delete_at,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TopicEvent:
        return cls(
            doc.get("change", "?"),
            doc.get("at", 0.0),
            doc.get("remote", ""),
            doc.get("topic_id"),
            doc.get("remote_delete_at"),
        )


@dataclass(frozen=True)
class FlowStatus:
    """One flow on this worker: its state, topics, lag, cluster checks, jobs and local tasks."""

    flow: str
    source: str
    target: str
    replicating: bool
    state: str
    last_error: str | None = None
    topics: int = 0
    partitions: int = 0
    task_count: int = 0
    topic_errors: Mapping[str, str] = field(default_factory=dict)
    topic_events: Mapping[str, TopicEvent] = field(default_factory=dict)  # source topic -> event, sorted
    lag_records: int = 0
    lag: Mapping[str, TopicLag] = field(default_factory=dict)  # source topic -> lag, sorted by topic
    clusters: Mapping[str, ClusterStatus] = field(default_factory=dict)  # alias -> check, sorted
    jobs: tuple[JobStatus, ...] = ()
    tasks: tuple[TaskStatus, ...] = ()  # sorted by task
    paused: tuple[PausedTopics, ...] = ()  # sorted by pattern
    throttle_bytes_per_second: int = 0  # the flow's byte-rate limit now (0: none)

    def not_ready_reasons(self) -> list[str]:
        """Why this flow keeps the worker from being ready: the flow not running, else every unreachable
        cluster, every stuck task and every task not running."""
        if self.state != "running":
            return [f"flow {self.flow} is {self.state}: {self.last_error or ''}".strip()]
        reasons = [
            f"flow {self.flow}: cluster {alias} unreachable: {check.error}"
            for alias, check in self.clusters.items()
            if not check.reachable
        ]
        for task in self.tasks:
            if task.stuck is not None:
                reasons.append(f"flow {self.flow} task {task.task} is stuck: {task.stuck}")
            elif task.state != "running":
                reasons.append(
                    f"flow {self.flow} task {task.task} is {task.state}: {task.last_error or ''}".strip()
                )
        return reasons

    def halted_partitions(self) -> list[str]:
        """Every partition of this flow halted on a record the target refuses, named for ``/readyz``."""
        return [
            f"flow {self.flow} task {task.task}: {h.topic}-{h.partition} halted at offset {h.offset}: "
            f"{h.reason}"
            for task in self.tasks
            for h in task.halted
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "replicating": self.replicating,
            "state": self.state,
            "last_error": self.last_error,
            "topics": self.topics,
            "partitions": self.partitions,
            "task_count": self.task_count,
            "topic_errors": dict(self.topic_errors),
            "topic_events": {topic: event.to_json() for topic, event in self.topic_events.items()},
            "lag_records": self.lag_records,
            "lag": {topic: lag.to_json() for topic, lag in self.lag.items()},
            "clusters": {alias: check.to_json() for alias, check in self.clusters.items()},
            "jobs": {job.job: {"last_error": job.last_error} for job in self.jobs},
            "tasks": [task.to_json() for task in self.tasks],
            "paused": [pause.to_json() for pause in self.paused],
            "throttle_bytes_per_second": self.throttle_bytes_per_second,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FlowStatus:
        name: str = doc.get("flow", "?")
        source, _, target = name.partition("->")  # flows are named <source>-><target>
        return cls(
            flow=name,
            source=source,
            target=target,
            replicating=doc.get("replicating", True),
            state=doc.get("state", "?"),
            last_error=doc.get("last_error"),
            topics=doc.get("topics", 0),
            partitions=doc.get("partitions", 0),
            task_count=doc.get("task_count", 0),
            topic_errors=dict(doc.get("topic_errors", {})),
            topic_events={t: TopicEvent.from_json(e) for t, e in doc.get("topic_events", {}).items()},
            lag_records=doc.get("lag_records", 0),
            lag={topic: TopicLag.from_json(lag) for topic, lag in doc.get("lag", {}).items()},
            clusters={alias: ClusterStatus.from_json(c) for alias, c in doc.get("clusters", {}).items()},
            jobs=tuple(JobStatus(job, info.get("last_error")) for job, info in doc.get("jobs", {}).items()),
            tasks=tuple(TaskStatus.from_json(task) for task in doc.get("tasks", [])),
            paused=tuple(PausedTopics.from_json(p) for p in doc.get("paused", [])),
            throttle_bytes_per_second=doc.get("throttle_bytes_per_second", 0),
        )


@dataclass(frozen=True)
class GroupMember:
    """One worker of the coordination group, as Kafka's group coordinator has it."""

    worker: str
    host: str
    this: bool  # this worker
    tasks: tuple[str, ...]  # ``mm2-tasks.<source>.internal/<task>``
    config: str | None = None  # its configuration's digest (None: an older worker did not say)

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "host": self.host,
            "this": self.this,
            "tasks": list(self.tasks),
            "config": self.config,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> GroupMember:
        return cls(
            doc.get("worker", "?"),
            doc.get("host", ""),
            bool(doc.get("this")),
            tuple(doc.get("tasks", [])),
            doc.get("config"),
        )


@dataclass(frozen=True)
class GroupStatus:
    """The coordination group on one target cluster, or why that cluster could not say (``error``)."""

    group: str
    state: str | None = None
    workers: tuple[GroupMember, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"group": self.group, "error": self.error}
        return {"group": self.group, "state": self.state, "workers": [w.to_json() for w in self.workers]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> GroupStatus:
        workers = tuple(GroupMember.from_json(member) for member in doc.get("workers", []))
        return cls(doc.get("group", "?"), doc.get("state"), workers, doc.get("error"))


def not_ready_reasons(flows: Iterable[FlowStatus]) -> list[str]:
    """Why a worker with these flows is not ready (``/readyz`` 503); empty when it is."""
    return [reason for flow in flows for reason in flow.not_ready_reasons()]


@dataclass(frozen=True)
class WorkerStatus:
    """Everything ``/status`` shows of one worker. ``reasons`` are the flows' `not_ready_reasons`;
    ``groups`` (per target cluster) is filled in only where Kafka was asked (``/status``)."""

    version: str
    worker: str
    flows: tuple[FlowStatus, ...] = ()
    reasons: tuple[str, ...] = ()
    ready: bool = True
    groups: Mapping[str, GroupStatus] | None = None
    config: str | None = None  # the digest of the configuration it runs

    @classmethod
    def of(
        cls, version: str, worker: str, flows: Iterable[FlowStatus], config: str | None = None
    ) -> WorkerStatus:
        """The status of a worker running ``flows``, readiness derived from them."""
        flows = tuple(flows)
        reasons = tuple(not_ready_reasons(flows))
        return cls(version, worker, flows, reasons, not reasons, config=config)

    def halted_partitions(self) -> list[str]:
        """The halted partitions of every flow (``/readyz`` names them; they do not make it fail)."""
        return [line for flow in self.flows for line in flow.halted_partitions()]

    def with_groups(self, groups: Mapping[str, GroupStatus]) -> WorkerStatus:
        return replace(self, groups=dict(groups))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": self.version,
            "worker": self.worker,
            "ready": self.ready,
            "reasons": list(self.reasons),
            "flows": [flow.to_json() for flow in self.flows],
            "config": self.config,
        }
        if self.groups is not None:
            doc["groups"] = {target: group.to_json() for target, group in self.groups.items()}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WorkerStatus:
        groups = doc.get("groups")
        return cls(
            version=doc.get("version", "?"),
            worker=doc.get("worker", "?"),
            flows=tuple(FlowStatus.from_json(flow) for flow in doc.get("flows", [])),
            reasons=tuple(doc.get("reasons", [])),
            ready=bool(doc.get("ready")),
            groups=None if groups is None else {t: GroupStatus.from_json(g) for t, g in groups.items()},
            config=doc.get("config"),
        )
