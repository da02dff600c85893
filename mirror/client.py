"""The client API of Java MM2's connect-mirror-client (`MirrorClient`, `RemoteClusterUtils`), async.

Run against the cluster a consumer fails over *to* (docs/mm2-compat.md §7): heartbeat topics tell which
clusters replicate into it and how many hops away they are; checkpoints tell where a group that consumed
on another cluster should resume here.

    async with MirrorClient(settings.cluster("B"), policy) as client:
        offsets = await client.remote_consumer_offsets("orders-app", "A")

Semantics follow Java's: `replication_hops` is -1 when the cluster is not upstream, topics are listed
without Kafka's internal ones, a missing checkpoints topic gives no offsets. One difference: where Java
returns whatever it read when its timeout expires, `remote_consumer_offsets` raises `KafkaUnavailable`,
because a partial answer would fail a consumer over to the wrong place.
"""

from __future__ import annotations

from types import TracebackType

from mirror.config import ClusterSettings
from mirror.kafka import Admin
from mirror.kafka.groups import read_partition
from mirror.mm2.policy import DefaultReplicationPolicy, ReplicationPolicy
from mirror.mm2.records import Checkpoint
from mirror.replication import malformed
from mirror.types import TP

__all__ = [
    "DEFAULT_TIMEOUT",
    "MirrorClient",
    "checkpoint_topics",
    "heartbeat_topics",
    "remote_checkpoints",
    "remote_consumer_offsets",
    "remote_topics",
    "replication_hops",
    "translate_offsets",
    "upstream_clusters",
]

DEFAULT_TIMEOUT = 60.0


class MirrorClient:
    """Java `MirrorClient` over one cluster; use as an async context manager (or `start`/`close`)."""

    def __init__(
        self, cluster: ClusterSettings, policy: ReplicationPolicy | None = None, *, timeout: float = 60.0
    ) -> None:
        self.cluster = cluster
        self.policy = policy if policy is not None else DefaultReplicationPolicy()
        self.timeout = timeout
        self._admin = Admin(cluster, "mirror-client|admin", int(timeout * 1000))

    async def start(self) -> None:
        await self._admin.start()

    async def close(self) -> None:
        await self._admin.close()

    async def __aenter__(self) -> MirrorClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def list_topics(self) -> set[str]:
        """Topic names, without Kafka's internal topics (Java `listTopics()` with default options)."""
        return set(await self._admin.list_topics())

    async def heartbeat_topics(self) -> set[str]:
        """`heartbeats`, `A.heartbeats`, `B.A.heartbeats`, ...: the local one and replicated ones."""
        return {t for t in await self.list_topics() if self.policy.is_heartbeats_topic(t)}

    async def checkpoint_topics(self) -> set[str]:
        return {t for t in await self.list_topics() if self.policy.is_checkpoints_topic(t)}

    async def replication_hops(self, upstream_alias: str) -> int:
        """The fewest hops from `upstream_alias` to this cluster (A->B->C: 2 from A to C), or -1."""
        hops = [self._count_hops(t, upstream_alias) for t in await self.heartbeat_topics()]
        return min((h for h in hops if h != -1), default=-1)

    async def upstream_clusters(self) -> set[str]:
        """Every cluster along the chain of every heartbeat topic (`B.A.heartbeats` gives {B, A})."""
        sources: set[str] = set()
        for topic in await self.heartbeat_topics():
            sources |= self._all_sources(topic)
        return sources

    async def remote_topics(self, source: str | None = None) -> set[str]:
        """Non-internal topics with a source cluster (only those directly from `source`, if given)."""
        return {
            t
            for t in await self.list_topics()
            if self._is_remote_topic(t) and (source is None or self.policy.topic_source(t) == source)
        }

    async def remote_checkpoints(
        self, group: str, remote_alias: str, timeout: float | None = None
    ) -> dict[TP, Checkpoint]:
        """The latest checkpoint per partition (topic names of this cluster) of `group`, which consumed on
        `remote_alias`: from `<remote_alias>.checkpoints.internal` partition 0. Empty if there is none."""
        topic = self.policy.checkpoints_topic(remote_alias)
        records = await read_partition(
            self.cluster, topic, "mirror-client|checkpoints-consumer", timeout or self.timeout
        )
        latest: dict[TP, Checkpoint] = {}
        for checkpoint in malformed.decoded(
            records or (),
            malformed.checkpoint,
            cluster=self.cluster.alias,
            topic=topic,
            fallback="the partition keeps its last readable checkpoint",  # as Java: logged and skipped
        ):
            if checkpoint.group == group:
                latest[checkpoint.topic_partition] = checkpoint
        return latest

    async def remote_consumer_offsets(
        self, group: str, remote_alias: str, timeout: float | None = None
    ) -> dict[TP, tuple[int, str]]:
        """Java `remoteConsumerOffsets`: (downstream offset, metadata) per partition of this cluster, ready
        for a consumer's seek or an offsets commit."""
        checkpoints = await self.remote_checkpoints(group, remote_alias, timeout)
        return {tp: (cp.downstream_offset, cp.metadata) for tp, cp in checkpoints.items()}

    # --- Java MirrorClient's helpers ----------------------------------------------------------------

    def _count_hops(self, topic: str, source_alias: str) -> int:
        hops = 0
        visited: set[str] = set()
        current: str | None = topic
        while current is not None:
            hops += 1
            source = self.policy.topic_source(current)
            if source is None:
                return -1
            if source == source_alias:
                return hops
            if source in visited:  # a policy that cannot prevent cycles (Identity): give up
                return -1
            visited.add(source)
            current = self.policy.upstream_topic(current)
        return -1

    def _all_sources(self, topic: str) -> set[str]:
        sources: set[str] = set()
        current: str | None = topic
        source = self.policy.topic_source(topic)
        while source is not None and source not in sources:
            sources.add(source)
            current = self.policy.upstream_topic(current) if current is not None else None
            source = self.policy.topic_source(current) if current is not None else None
        return sources

    def _is_remote_topic(self, topic: str) -> bool:
        return not self.policy.is_internal_topic(topic) and self.policy.topic_source(topic) is not None


# --- RemoteClusterUtils: one client per call -----------------------------------------------------------


async def heartbeat_topics(cluster: ClusterSettings, policy: ReplicationPolicy | None = None) -> set[str]:
    async with MirrorClient(cluster, policy) as client:
        return await client.heartbeat_topics()


async def checkpoint_topics(cluster: ClusterSettings, policy: ReplicationPolicy | None = None) -> set[str]:
    async with MirrorClient(cluster, policy) as client:
        return await client.checkpoint_topics()


async def replication_hops(
    cluster: ClusterSettings, upstream_alias: str, policy: ReplicationPolicy | None = None
) -> int:
    async with MirrorClient(cluster, policy) as client:
        return await client.replication_hops(upstream_alias)


async def upstream_clusters(cluster: ClusterSettings, policy: ReplicationPolicy | None = None) -> set[str]:
    async with MirrorClient(cluster, policy) as client:
        return await client.upstream_clusters()


async def remote_topics(
    cluster: ClusterSettings, source: str | None = None, policy: ReplicationPolicy | None = None
) -> set[str]:
    async with MirrorClient(cluster, policy) as client:
        return await client.remote_topics(source)


async def remote_checkpoints(
    cluster: ClusterSettings,
    group: str,
    remote_alias: str,
    timeout: float = DEFAULT_TIMEOUT,
    policy: ReplicationPolicy | None = None,
) -> dict[TP, Checkpoint]:
    async with MirrorClient(cluster, policy, timeout=timeout) as client:
        return await client.remote_checkpoints(group, remote_alias)


async def remote_consumer_offsets(
    cluster: ClusterSettings,
    group: str,
    remote_alias: str,
    timeout: float = DEFAULT_TIMEOUT,
    policy: ReplicationPolicy | None = None,
) -> dict[TP, tuple[int, str]]:
    async with MirrorClient(cluster, policy, timeout=timeout) as client:
        return await client.remote_consumer_offsets(group, remote_alias)


async def translate_offsets(
    cluster: ClusterSettings,
    remote_cluster_alias: str,
    group: str,
    timeout: float = DEFAULT_TIMEOUT,
    policy: ReplicationPolicy | None = None,
) -> dict[TP, tuple[int, str]]:
    """Java `RemoteClusterUtils.translateOffsets(props, remoteClusterAlias, consumerGroupId, timeout)`:
    where `group`, which consumed on `remote_cluster_alias`, resumes on `cluster`."""
    return await remote_consumer_offsets(cluster, group, remote_cluster_alias, timeout, policy)
