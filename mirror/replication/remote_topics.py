"""Topic discovery and creation for a flow: which source topics replicate, and their remote topics.

Every refresh: list the source topics with their ids, keep those the flow replicates (filters, internal
topics, cycles), create missing remote topics with the same partition count, the configured replication
factor and the source's configs filtered as MM2 does, and add partitions when the source grew. A topic
that cannot be created is reported (log, metric, status) and retried at the next refresh; the others keep
flowing. With ``remote.topics.delete.enabled``, the remote topic of a deleted source topic is deleted
(`delete_remote`; when: `mirror.replication.lifecycle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from mirror import metrics
from mirror.config import FlowSettings
from mirror.errors import MirrorError
from mirror.kafka import Admin, NewTopicSpec, describe_topics
from mirror.mm2.filters import TopicFilter
from mirror.mm2.policy import ReplicationPolicy, should_replicate_topic
from mirror.mm2.topic_configs import ConfigPropertyFilter, filter_topic_configs

log = structlog.get_logger(__name__)


@dataclass
class TopicPlan:
    """What a refresh found and would change (``mirror validate`` prints it; `apply` does it)."""

    source_partitions: dict[str, int] = field(default_factory=dict)  # replicated source topic -> partitions
    create: list[NewTopicSpec] = field(default_factory=list)
    grow: dict[str, int] = field(default_factory=dict)  # remote topic -> new partition count
    ready: dict[str, int] = field(default_factory=dict)  # source topic -> partitions present on the target
    source_ids: dict[str, str | None] = field(default_factory=dict)  # replicated source topic -> topic id
    source_topics: set[str] = field(default_factory=set)  # every topic of the source


class TopicSync:
    def __init__(
        self, flow: FlowSettings, source_admin: Admin, target_admin: Admin, policy: ReplicationPolicy
    ) -> None:
        self.flow = flow
        self.source_admin = source_admin
        self.target_admin = target_admin
        self.policy = policy
        self.topic_filter = TopicFilter(flow.topics, flow.topics_exclude)
        self.config_filter = ConfigPropertyFilter(flow.config_properties_exclude, flow.use_defaults_from)
        self.errors: dict[str, str] = {}  # source topic -> last error
        self._log = log.bind(flow=flow.name)

    def remote(self, topic: str) -> str:
        return self.policy.format_remote_topic(self.flow.source, topic)

    def replicates(self, topic: str) -> bool:
        return should_replicate_topic(
            self.policy,
            self.topic_filter,
            topic,
            self.flow.source,
            self.flow.target,
            self.flow.heartbeats_replication_enabled,
        )

    async def plan(self) -> TopicPlan:
        described = await describe_topics(self.source_admin)
        target = await self.target_admin.list_topics()
        replicated = {t: d for t, d in described.items() if self.replicates(t)}
        plan = TopicPlan(
            source_partitions={t: d.partitions for t, d in replicated.items()},
            source_ids={t: d.topic_id for t, d in replicated.items()},
            source_topics=set(described),
        )
        missing = [t for t in plan.source_partitions if self.remote(t) not in target]
        configs = await self.source_admin.describe_topic_configs(missing) if missing else {}
        for topic, partitions in sorted(plan.source_partitions.items()):
            remote = self.remote(topic)
            if remote in target:
                plan.ready[topic] = min(partitions, target[remote])
                if target[remote] < partitions:
                    plan.grow[remote] = partitions
                continue
            entries = configs.get(topic)
            if isinstance(entries, MirrorError):
                self._report(topic, entries)
                continue
            topic_configs = {
                name: value
                for name, value in filter_topic_configs(
                    [(e.name, e.value, e.read_only, e.is_sensitive, e.source) for e in entries or []],
                    self.config_filter,
                ).items()
                if value is not None
            }
            plan.create.append(NewTopicSpec(remote, partitions, self.flow.replication_factor, topic_configs))
        return plan

    async def apply(self, plan: TopicPlan) -> dict[str, int]:
        """Create and grow remote topics; returns source topic -> partitions ready on the target."""
        ready = dict(plan.ready)
        if plan.create:
            results = await self.target_admin.create_topics(plan.create)
            by_remote = {self.remote(t): t for t in plan.source_partitions}
            for spec in plan.create:
                topic = by_remote[spec.name]
                err = results.get(spec.name)
                if err is None:
                    self._log.info(
                        "created remote topic",
                        topic=spec.name,
                        partitions=spec.partitions,
                        configs=len(spec.configs),
                    )
                    self.errors.pop(topic, None)
                    ready[topic] = spec.partitions
                else:
                    self._report(topic, err)
        for remote, partitions in plan.grow.items():
            topic = next(t for t in plan.source_partitions if self.remote(t) == remote)
            grow_err = await self.target_admin.create_partitions(remote, partitions)
            if grow_err is None:
                self._log.info("added partitions to remote topic", topic=remote, partitions=partitions)
                ready[topic] = partitions
            else:
                self._report(topic, grow_err)
        metrics.topics_mirrored.labels(self.flow.source, self.flow.target).set(len(ready))
        metrics.partitions_mirrored.labels(self.flow.source, self.flow.target).set(sum(ready.values()))
        return ready

    async def delete_remote(self, topic: str) -> bool:
        """Delete the remote topic of deleted source topic ``topic`` (``remote.topics.delete.enabled``);
        False when it could not be (reported; tried again at the next refresh)."""
        err = await self.target_admin.delete_topic(self.remote(topic))
        if err is not None:
            self._report(topic, err, "cannot delete remote topic; will retry")
            return False
        self.errors.pop(topic, None)
        return True

    async def refresh(self) -> dict[str, int]:
        return await self.apply(await self.plan())

    def _report(
        self, topic: str, err: MirrorError, what: str = "cannot create or grow remote topic; will retry"
    ) -> None:
        first = self.errors.get(topic) != str(err)
        self.errors[topic] = str(err)
        metrics.errors_total.labels(self.flow.source, self.flow.target, err.kind).inc()
        if first:
            self._log.error(what, topic=self.remote(topic), error=str(err))
