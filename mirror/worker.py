"""Process lifecycle: one worker runs the jobs of every active flow until it is told to stop.

A flow runner connects to its two clusters (retrying with backoff, never fatal), creates its internal
topics, loads progress, then runs the topic refresher, the source tasks and the heartbeat job in one
TaskGroup. ``Worker.stop()`` (SIGTERM/SIGINT) stops fetching, lets in-flight batches be acknowledged,
stores progress and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from mirror import metrics
from mirror.config import FlowSettings, Settings
from mirror.errors import MirrorError
from mirror.heartbeat import HeartbeatJob
from mirror.kafka import Admin
from mirror.policy import ReplicationPolicy, policy_from_config
from mirror.progress import ProgressStore
from mirror.source import SourceTask, assign_partitions, offset_syncs_location
from mirror.topics import TopicSync

log = structlog.get_logger(__name__)

_BACKOFF_MIN, _BACKOFF_MAX = 1.0, 30.0


class FatalError(MirrorError):
    """The configuration cannot work against these clusters; retrying would not help."""

    kind = "fatal"


def make_policy(flow: FlowSettings) -> ReplicationPolicy:
    return policy_from_config(
        flow.replication_policy_class,
        flow.replication_policy_separator,
        flow.replication_policy_internal_topic_separator_enabled,
        flow.source,
    )


@dataclass
class FlowStatus:
    state: str = "starting"
    last_error: str | None = None
    topics: int = 0
    partitions: int = 0
    topic_errors: dict[str, str] = field(default_factory=dict)


class FlowRunner:
    def __init__(self, settings: Settings, flow: FlowSettings) -> None:
        self.flow = flow
        self.source = settings.cluster(flow.source)
        self.target = settings.cluster(flow.target)
        self.policy = make_policy(flow)
        self.status = FlowStatus()
        self.tasks: list[SourceTask] = []
        self.heartbeat: HeartbeatJob | None = None
        self._stopping = asyncio.Event()
        self._log = log.bind(flow=flow.name)

    def stop(self) -> None:
        self._stopping.set()
        for task in self.tasks:
            task.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()

    async def run(self) -> None:
        backoff = _BACKOFF_MIN
        while not self._stopping.is_set():
            source_admin = Admin(self.source, f"{self.flow.name}|replication-source-admin")
            target_admin = Admin(self.target, f"{self.flow.name}|replication-target-admin")
            try:
                await source_admin.start()
                await target_admin.start()
                await self._run(source_admin, target_admin)
                return
            except FatalError:
                raise
            except MirrorError as exc:
                self.status.state = "retrying"
                self.status.last_error = str(exc)
                metrics.errors_total.labels(self.flow.source, self.flow.target, exc.kind).inc()
                self._log.warning("flow cannot start yet, retrying", error=str(exc), backoff_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                await source_admin.close()
                await target_admin.close()

    async def _check_replication_factors(self, source_admin: Admin, target_admin: Admin) -> None:
        """Refuse to start when a topic this flow creates asks for more replicas than brokers exist."""
        flow = self.flow
        wanted: list[tuple[str, str, int]] = []  # (cluster alias, key, replication factor)
        if flow.emit_heartbeats_enabled:
            wanted.append(
                (flow.target, "heartbeats.topic.replication.factor", flow.heartbeats_topic_replication_factor)
            )
        if flow.enabled:
            wanted.append(
                (flow.target, "offset.storage.replication.factor", flow.offset_storage_replication_factor)
            )
            wanted.append((flow.target, "replication.factor", flow.replication_factor))
            if flow.emit_offset_syncs_enabled:
                alias = offset_syncs_location(flow, self.policy)[0]
                rf = flow.offset_syncs_topic_replication_factor
                wanted.append((alias, "offset-syncs.topic.replication.factor", rf))
        brokers = {
            flow.target: await target_admin.broker_count(),
            flow.source: await source_admin.broker_count() if flow.enabled else 0,
        }
        for alias, key, rf in wanted:
            if rf > brokers[alias]:
                raise FatalError(
                    f"{key}={rf} but cluster {alias} has {brokers[alias]} broker(s): "
                    f"set {key} (or {flow.name}.{key}) to at most {brokers[alias]}"
                )

    async def _run(self, source_admin: Admin, target_admin: Admin) -> None:
        await self._check_replication_factors(source_admin, target_admin)
        async with asyncio.TaskGroup() as tg:
            if self.flow.emit_heartbeats_enabled:
                self.heartbeat = HeartbeatJob(self.flow, self.target, target_admin)
                if self._stopping.is_set():
                    self.heartbeat.stop()
                tg.create_task(self.heartbeat.run())
            if self.flow.enabled:
                await self._run_source(tg, source_admin, target_admin)
            self.status.state = "running"
            self.status.last_error = None

    async def _run_source(self, tg: asyncio.TaskGroup, source_admin: Admin, target_admin: Admin) -> None:
        progress = ProgressStore(self.flow, self.target)
        await progress.ensure_topic(target_admin)
        await progress.load()
        await progress.start()
        topics = TopicSync(self.flow, source_admin, target_admin, self.policy)
        syncs_cluster = None
        if self.flow.emit_offset_syncs_enabled:
            alias, syncs_topic = offset_syncs_location(self.flow, self.policy)
            admin = source_admin if alias == self.flow.source else target_admin
            rf = self.flow.offset_syncs_topic_replication_factor
            await admin.ensure_topic(syncs_topic, 1, rf, {"cleanup.policy": "compact"})
            syncs_cluster = admin.cluster
        self.tasks = [
            SourceTask(self.flow, i, self.source, self.target, self.policy, progress, syncs_cluster)
            for i in range(self.flow.tasks_max)
        ]
        if self._stopping.is_set():
            self.stop()  # stop() came while starting: pass it on to the tasks that exist now
        runs = [tg.create_task(t.run()) for t in self.tasks]
        tg.create_task(self._refresh_loop(topics, runs, progress))

    async def _refresh_loop(
        self, topics: TopicSync, runs: list[asyncio.Task[None]], progress: ProgressStore
    ) -> None:
        interval = self.flow.refresh_topics_interval_seconds
        try:
            while not self._stopping.is_set():
                try:
                    ready = await topics.refresh()
                except MirrorError as exc:
                    self.status.last_error = str(exc)
                    self._log.warning("topic refresh failed, retrying", error=str(exc))
                    ready = None
                if ready is not None:
                    partitions = {(t, p) for t, n in ready.items() for p in range(n)}
                    for task, share in zip(
                        self.tasks, assign_partitions(partitions, len(self.tasks)), strict=True
                    ):
                        task.set_partitions(share)
                    self.status.topics, self.status.partitions = len(ready), len(partitions)
                    self.status.topic_errors = dict(topics.errors)
                if ready is None:
                    wait: float | None = _BACKOFF_MAX
                else:
                    wait = interval if self.flow.refresh_topics_enabled else None  # None: until stopped
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
            await asyncio.gather(*runs)
        finally:
            await progress.close()


class Worker:
    """Runs every active flow of the settings in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flows = [FlowRunner(settings, f) for f in settings.active_flows()]
        self._stopping = False

    def stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            log.info("stopping: flushing in-flight batches and storing progress")
            for flow in self.flows:
                flow.stop()

    async def run(self) -> None:
        log.info("worker starting", flows=[f.flow.name for f in self.flows])
        async with asyncio.TaskGroup() as tg:
            for flow in self.flows:
                tg.create_task(flow.run())
        log.info("worker stopped")
