"""Process lifecycle: a worker joins its peers through Kafka and runs the tasks Kafka assigns to it.

There is one code path: a single worker is a group of one. Per target cluster the worker joins the
consumer group ``service.group`` over the flows' tasks topics (``mm2-tasks.<source>.internal`` on the
target, one partition per task; `mirror.kafka.coordination`). An assigned partition is a task to run,
a revoked one a task to stop (flush in-flight batches, store progress) before the rebalance completes.
Kafka's group coordinator thus gives membership, failure detection and rebalancing: a worker that stops
cleanly leaves the group and its tasks move at once; one that dies loses them after the session timeout.

Each flow's singletons (remote topic creation, heartbeats, checkpoints) run on the worker owning task 0.
Every worker computes which source partitions belong to which task with the same pure function
(`mirror.replication.assignment.assign_partitions`) over the same task count — the one the group's leader
assigned with, carried in the assignment — so two workers never copy the same partition at once
(modulo a zombie's tail, which at-least-once tolerates and exactly-once fences),
also while ``tasks.max`` grows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from mirror import __version__, metrics
from mirror.config import ClusterSettings, FlowSettings, Settings, config_digest
from mirror.errors import MirrorError
from mirror.jobs.configsync import ConfigSyncJob
from mirror.jobs.heartbeat import HeartbeatJob
from mirror.kafka import Admin
from mirror.kafka.coordination import GroupMembership, TaskRef
from mirror.replication.assignment import assign_partitions
from mirror.replication.control_channel import ControlChannel
from mirror.replication.controls import Reset
from mirror.replication.lifecycle import TopicLifecycle
from mirror.replication.progress import ProgressStore
from mirror.replication.remote_topics import TopicSync
from mirror.replication.task import DRAIN_TIMEOUT, SourceTask
from mirror.replication.topology import (
    DEAD_LETTER_TOPIC_CONFIGS,
    dead_letter_topic,
    make_policy,
    offset_syncs_location,
    tasks_topic,
)
from mirror.retry import Backoff, retrying
from mirror.service.status import (
    ClusterStatus,
    FlowStatus,
    HaltedPartition,
    JobStatus,
    PausedTopics,
    TaskStatus,
    TopicEvent,
    TopicLag,
    WorkerStatus,
)
from mirror.types import TP

log = structlog.get_logger(__name__)

_BACKOFF_MIN, _BACKOFF_MAX = 1.0, 10.0
#: How long a stopping task may take (in-flight acks, final progress) before it is cancelled.
TASK_STOP_TIMEOUT = DRAIN_TIMEOUT + 5.0
#: The same for a flow job (heartbeats, checkpoints, config sync): they hold nothing to flush.
SINGLETON_STOP_TIMEOUT = 3.0


class FatalError(MirrorError):
    """The configuration cannot work against these clusters; retrying would not help."""

    kind = "fatal"


class Job(Protocol):
    """A flow singleton (heartbeats, checkpoints): runs until stopped, never dies of a Kafka error."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def last_error(self) -> str | None:
        """Why its last round failed; None once one succeeded (for /status)."""
        ...


def job_name(job: Job) -> str:
    """``heartbeat``, ``checkpoint``, ``configsync``: the job's class name without ``Job``."""
    return type(job).__name__.removesuffix("Job").lower()


@dataclass
class FlowState:
    """What a flow runner keeps up to date as it runs; `FlowRunner.snapshot` copies it for /status."""

    state: str = "starting"
    last_error: str | None = None
    topics: int = 0
    partitions: int = 0
    task_count: int = 0
    topic_errors: dict[str, str] = field(default_factory=dict)


#: Error kinds that need a person (credentials, certificates, ACLs): logged as errors, not warnings.
_NEEDS_ACTION = frozenset({"authentication", "tls", "authorization"})


async def _retrying(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    stopping: asyncio.Event,
    on_error: Callable[[MirrorError], None] | None = None,
) -> bool:
    """Run ``attempt`` until it succeeds (True) or stopping is set (False); MirrorErrors back off.

    Each distinct error is logged once (repeats at debug level: no flood while, say, a password is wrong);
    ``on_error`` sees every failure (status, metrics)."""

    def failed(exc: Exception) -> MirrorError:
        assert isinstance(exc, MirrorError)
        if on_error is not None:
            on_error(exc)
        return exc

    return await retrying(
        what,
        attempt,
        stopping=stopping,
        backoff=Backoff(_BACKOFF_MIN, _BACKOFF_MAX),
        log=log,
        fatal=(FatalError,),
        on_error=failed,
        quiet_repeats=True,
        urgent=_NEEDS_ACTION,
    )


class FlowRunner:
    """One flow on this worker: its clients, internal topics, topic refresh, and its local tasks."""

    def __init__(self, settings: Settings, flow: FlowSettings) -> None:
        self.flow = flow
        self.source = settings.cluster(flow.source)
        self.target = settings.cluster(flow.target)
        self.policy = make_policy(flow)
        self.group = settings.service.group
        self.status = FlowState()
        self.tasks_topic = tasks_topic(flow)
        #: How many tasks this flow runs: ``tasks.max``; one (the singletons) when it does not replicate.
        self.task_limit = flow.tasks_max if flow.enabled else 1
        self.tasks: dict[int, SourceTask] = {}
        self.heartbeat: HeartbeatJob | None = None
        self.singletons: list[Job] = []
        self.prepared = asyncio.Event()
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._singleton_runs: list[asyncio.Task[None]] = []
        self._shares: list[set[TP]] | None = None
        self._ready: set[TP] | None = None  # source partitions whose remote partitions exist
        self._seen: set[TP] | None = None  # source partitions this flow has known since it started
        self._created: set[TP] = set()  # those that appeared while it ran: they started at offset 0
        self._stopping = asyncio.Event()
        self._refresh_now = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._log = log.bind(flow=flow.name)
        name = flow.name
        self.source_admin = Admin(self.source, f"{name}|replication-source-admin")
        self.target_admin = Admin(self.target, f"{name}|replication-target-admin")
        self.progress = ProgressStore(flow, self.target)
        self.topics = TopicSync(flow, self.source_admin, self.target_admin, self.policy)
        self.lifecycle = TopicLifecycle(
            flow.name,
            flow.source,
            flow.target,
            flow.remote_topics_delete_enabled,
            flow.remote_topics_delete_delay_seconds,
        )
        self._topic_ids: dict[str, str | None] = {}  # source topic -> id, as last listed (shared with tasks)
        self.progress.on_earlier_topic = self._earlier_topic
        self._syncs_cluster: ClusterSettings | None = None
        #: Operator controls (pause, resume, progress reset): followed in the flow's control topic.
        self.control = ControlChannel(flow, self.target)

    @property
    def owns_singletons(self) -> bool:
        return 0 in self._runs or bool(self.singletons)

    def stop(self) -> None:
        self._stopping.set()

    def clusters_needed(self) -> dict[str, Admin]:
        """The clusters this flow needs, with the admin client that checks each: the target always, the
        source when it replicates (a heartbeat-only flow writes to its target only)."""
        needed = {self.flow.target: self.target_admin}
        if self.flow.enabled:
            needed.setdefault(self.flow.source, self.source_admin)
        return needed

    def snapshot(self, clusters: Mapping[str, ClusterStatus] | None = None) -> FlowStatus:
        """This flow as /status shows it: its state, lag per source topic (summed over the partitions of
        every local task), the last checks of the ``clusters`` it needs (by alias), its jobs and tasks."""
        tasks: list[TaskStatus] = []
        topics: dict[str, tuple[int, int]] = {}  # source topic -> (partitions, lag)
        for index, task in sorted(self.tasks.items()):
            status, lag = task.snapshot(), task.lag()
            halted = tuple(
                HaltedPartition(topic, partition, halt.offset, halt.reason)
                for (topic, partition), halt in sorted(status.halted.items())
            )
            tasks.append(
                TaskStatus(
                    index,
                    status.state,
                    status.partitions,
                    status.records,
                    status.restarts,
                    sum(lag.values()),
                    status.last_error,
                    halted,
                    status.dead_lettered,
                    len(task.paused()),
                    status.stuck,
                )
            )
            for (topic, _partition), records in lag.items():
                partitions, total = topics.get(topic, (0, 0))
                topics[topic] = (partitions + 1, total + records)
        source = self.flow.source
        controls = self.control.controls
        lag_per_topic = {
            topic: TopicLag(
                self.policy.format_remote_topic(source, topic), partitions, total, controls.is_paused(topic)
            )
            for topic, (partitions, total) in sorted(topics.items())
        }
        needed = self.clusters_needed()
        checks = {alias: check for alias, check in sorted((clusters or {}).items()) if alias in needed}
        events = {
            topic: TopicEvent(
                change.change,
                change.at,
                self.policy.format_remote_topic(source, topic),
                change.topic_id,
                change.remote_delete_at,
            )
            for topic, change in sorted(self.lifecycle.changes.items())
        }
        return FlowStatus(
            flow=self.flow.name,
            source=source,
            target=self.flow.target,
            replicating=self.flow.enabled,
            state=self.status.state,
            last_error=self.status.last_error,
            topics=self.status.topics,
            partitions=self.status.partitions,
            task_count=self.status.task_count,
            topic_errors=dict(self.status.topic_errors),
            topic_events=events,
            lag_records=sum(t.lag_records for t in lag_per_topic.values()),
            lag=lag_per_topic,
            clusters=checks,
            jobs=tuple(JobStatus(job_name(job), job.last_error) for job in self.singletons),
            tasks=tuple(tasks),
            paused=tuple(PausedTopics(p.pattern, p.by, p.at) for _, p in sorted(controls.pauses.items())),
            throttle_bytes_per_second=self.throttle,
        )

    # --- preparation: connect, check, create internal topics ----------------------------------------

    async def _prepare(self) -> None:
        isolation = self.flow.consumer.get("isolation.level", "read_committed")
        if self.flow.exactly_once_support != "disabled" and isolation != "read_committed":
            raise FatalError(
                f"{self.flow.name}.exactly.once.support={self.flow.exactly_once_support} needs the source "
                f"read with isolation.level=read_committed, not {isolation}"
            )
        await self.source_admin.start()
        await self.target_admin.start()
        await self._check_replication_factors()
        flow, admin = self.flow, self.target_admin
        rf = flow.offset_storage_replication_factor
        task_count = self.task_limit
        await admin.ensure_topic(self.tasks_topic, task_count, rf, {"cleanup.policy": "compact"})
        # One partition of the tasks topic per task. A larger tasks.max grows it; Kafka cannot shrink
        # it, so a lower tasks.max leaves the surplus partitions unassigned (the group leader caps the
        # assignment at its tasks.max and tells every member the count: mirror.kafka.coordination).
        existing = (await admin.list_topics()).get(self.tasks_topic, task_count)
        if existing < task_count:
            grow_error = await admin.create_partitions(self.tasks_topic, task_count)
            if grow_error is not None:
                raise grow_error
        elif existing > task_count:
            self._log.info(
                "tasks.max is lower than the tasks topic's partitions; the surplus tasks stay idle",
                tasks_max=task_count,
                partitions=existing,
            )
        self.status.task_count = task_count
        if flow.enabled:
            await self.progress.ensure_topic(admin)
            await self.progress.start()
            await self.control.ensure_topic(admin)
            await self.control.load()  # before any task fetches: a paused topic stays paused
            if flow.rejected_records_policy == "dead-letter":
                await admin.ensure_topic(dead_letter_topic(flow), 1, rf, DEAD_LETTER_TOPIC_CONFIGS)
            if flow.emit_offset_syncs_enabled:
                alias, syncs_topic = offset_syncs_location(flow, self.policy)
                syncs_admin = self.source_admin if alias == flow.source else admin
                rf = flow.offset_syncs_topic_replication_factor
                await syncs_admin.ensure_topic(syncs_topic, 1, rf, {"cleanup.policy": "compact"})
                self._syncs_cluster = syncs_admin.cluster

    async def _check_replication_factors(self) -> None:
        """Refuse to start when a topic this flow creates asks for more replicas than brokers exist."""
        flow = self.flow
        wanted: list[tuple[str, str, int]] = [  # (cluster alias, key, replication factor)
            (flow.target, "offset.storage.replication.factor", flow.offset_storage_replication_factor)
        ]
        if flow.emit_heartbeats_enabled:
            wanted.append(
                (flow.target, "heartbeats.topic.replication.factor", flow.heartbeats_topic_replication_factor)
            )
        if flow.enabled:
            wanted.append((flow.target, "replication.factor", flow.replication_factor))
            if flow.emit_offset_syncs_enabled:
                alias = offset_syncs_location(flow, self.policy)[0]
                rf = flow.offset_syncs_topic_replication_factor
                wanted.append((alias, "offset-syncs.topic.replication.factor", rf))
            if flow.emit_checkpoints_enabled:
                rf = flow.checkpoints_topic_replication_factor
                wanted.append((flow.target, "checkpoints.topic.replication.factor", rf))
        brokers = {
            flow.target: await self.target_admin.broker_count(),
            flow.source: await self.source_admin.broker_count(),
        }
        for alias, key, rf in wanted:
            if rf > brokers[alias]:
                raise FatalError(
                    f"{key}={rf} but cluster {alias} has {brokers[alias]} broker(s): "
                    f"set {key} (or {flow.name}.{key}) to at most {brokers[alias]}"
                )

    # --- running -------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if not await _retrying(
                f"flow {self.flow.name} start", self._prepare, self._stopping, self._prepare_failed
            ):
                return
            self.status.state = "running"
            self.status.last_error = None
            self.prepared.set()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if self.flow.enabled:
                    tg.create_task(self._refresh_loop())
                    tg.create_task(self.control.follow(self._stopping, self._progress_reset))
                await self._stopping.wait()
                await self.stop_all_tasks()
        finally:
            self._tg = None
            await asyncio.gather(
                self.progress.close(),
                self.control.close(),
                self.source_admin.close(),
                self.target_admin.close(),
            )

    @property
    def throttle(self) -> int:
        """The flow's byte-rate limit now (bytes/s, 0: none): set at run time, else configured."""
        runtime = self.control.controls.throttle
        return self.flow.throttle_bytes_per_second if runtime is None else runtime

    def task_throttle(self) -> float:
        """One task's share of the flow's limit: the tasks with partitions share it equally (every worker
        computes the same shares, `_share_out`)."""
        rate = self.throttle
        if rate <= 0:
            return 0.0
        busy = sum(1 for share in self._shares or () if share)
        return rate / max(1, busy)

    def _progress_reset(self, reset: Reset) -> None:
        for task in self.tasks.values():
            task.reset_progress(reset)

    def _earlier_topic(self, topic: str, stored_id: str, topic_id: str) -> None:
        """A task found progress of an earlier topic of this name (re-created while no worker looked)."""
        self.lifecycle.recreated(topic, stored_id, topic_id, time.time())

    def _prepare_failed(self, exc: MirrorError) -> None:
        """Starting the flow failed: say why in /status and /readyz, count it by kind."""
        self.status.state = "retrying"
        self.status.last_error = str(exc)
        metrics.errors_total.labels(self.flow.source, self.flow.target, exc.kind).inc()

    async def _refresh_loop(self) -> None:
        interval = self.flow.refresh_topics_interval_seconds
        while not self._stopping.is_set():
            wait: float | None = interval if self.flow.refresh_topics_enabled else None
            try:
                await self._refresh()
                self.status.last_error = None
            except MirrorError as exc:
                self.status.last_error = str(exc)
                metrics.errors_total.labels(self.flow.source, self.flow.target, exc.kind).inc()
                self._log.warning("topic refresh failed, retrying", error=str(exc))
                wait = min(interval, _BACKOFF_MAX)
            self._refresh_now.clear()
            waiters = [
                asyncio.ensure_future(self._stopping.wait()),
                asyncio.ensure_future(self._refresh_now.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _refresh(self) -> None:
        plan = await self.topics.plan()
        changes = self.lifecycle.observe(plan.source_ids, time.time(), plan.source_topics)
        self._topic_ids.clear()
        self._topic_ids.update(plan.source_ids)
        found = {(t, p) for t, n in plan.source_partitions.items() for p in range(n)}
        if self._seen is not None:
            self._created |= found - self._seen
        self._seen = found | (self._seen or set())
        if changes.recreated:
            # the new topics began at offset 0: copy them from there, with nothing of the old positions
            recreated = set(changes.recreated)
            self._created |= {tp for tp in found if tp[0] in recreated}
            for task in self.tasks.values():
                task.restart_topics(recreated)
        # Only the owner of task 0 creates, grows and (opt-in) deletes remote topics; the others follow.
        if self.owns_singletons:
            for topic in changes.remote_deletions_due:
                if await self.topics.delete_remote(topic):
                    self.lifecycle.remote_deleted(topic, self.topics.remote(topic))
        ready = await self.topics.apply(plan) if self.owns_singletons else plan.ready
        partitions = {(t, p) for t, n in ready.items() for p in range(n)}
        self._ready = partitions
        self._share_out()
        self.status.topics, self.status.partitions = len(ready), len(partitions)
        self.status.topic_errors = dict(self.topics.errors)

    def _share_out(self) -> None:
        """Split the ready partitions over the generation's task count; give each local task its share."""
        if self._ready is None:
            return
        task_count = self.status.task_count
        self._shares = assign_partitions(self._ready, task_count)
        for index, task in self.tasks.items():
            task.set_partitions(self._shares[index] if index < task_count else set())

    async def set_task_count(self, count: int | None) -> None:
        """A new generation of the group: the task count its leader assigned with (None: it did not say,
        read the tasks topic). Called before the generation's tasks start, after the last ones stopped:
        the partition -> task mapping only ever changes between generations."""
        if count is None:  # a group led by an older worker: the tasks topic as this worker sees it
            try:
                count = (await self.target_admin.list_topics()).get(self.tasks_topic, self.status.task_count)
            except MirrorError as exc:
                count = self.status.task_count
                self._log.warning("task count unknown, keeping the last one", tasks=count, error=str(exc))
        if count != self.status.task_count:
            self._log.info("task count", tasks=count, was=self.status.task_count)
        self.status.task_count = count
        self._share_out()

    async def start_task(self, index: int) -> None:
        """Kafka assigned task ``index`` of this flow to this worker."""
        tg = self._tg
        if tg is None or self._stopping.is_set() or index in self._runs:
            return
        if index == 0:
            self._start_singletons(tg)
        if not self.flow.enabled:
            return
        task = SourceTask(
            self.flow,
            index,
            self.source,
            self.target,
            self.policy,
            self.progress,
            self._syncs_cluster,
            group=self.group,
            created_while_running=self._created,
            topic_ids=self._topic_ids,
            controls=self.control.controls,
            throttle=self.task_throttle,
        )
        if self._shares is not None and index < len(self._shares):
            task.set_partitions(self._shares[index])
        self.tasks[index] = task
        self._runs[index] = tg.create_task(task.run())
        if index == 0:
            self._refresh_now.set()  # create missing remote topics now rather than at the next refresh
        self._log.info("task started", task=index)

    async def stop_task(self, index: int) -> None:
        """Stop task ``index`` here: flush in-flight batches and store progress before returning.

        Bounded: a task that cannot finish (say, the target is unreachable) is cancelled after
        `TASK_STOP_TIMEOUT`; what it had not stored is copied again by its next owner."""
        singletons = self._stop_singletons() if index == 0 else asyncio.sleep(0)
        task, run = self.tasks.pop(index, None), self._runs.pop(index, None)
        if task is not None and run is not None:
            task.stop()
            await asyncio.gather(singletons, _stopped(run, TASK_STOP_TIMEOUT, f"task {index}", self._log))
            self._log.info("task stopped", task=index)
        else:
            await singletons

    async def stop_all_tasks(self) -> None:
        indices = set(self._runs) | ({0} if self.singletons else set())
        await asyncio.gather(*(self.stop_task(i) for i in indices))

    def _start_singletons(self, tg: asyncio.TaskGroup) -> None:
        flow = self.flow
        if flow.emit_heartbeats_enabled:
            self.heartbeat = HeartbeatJob(flow, self.target, self.target_admin)
            self.singletons.append(self.heartbeat)
        if flow.enabled and flow.emit_checkpoints_enabled and flow.emit_offset_syncs_enabled:
            from mirror.jobs.checkpoint import CheckpointJob  # noqa: PLC0415

            self.singletons.append(
                CheckpointJob(
                    flow, self.source, self.target, self.source_admin, self.target_admin, self.policy
                )
            )
        if flow.enabled and (flow.sync_topic_configs_enabled or flow.sync_topic_acls_enabled):
            self.singletons.append(ConfigSyncJob(flow, self.source_admin, self.target_admin, self.policy))
        self._singleton_runs = [tg.create_task(job.run()) for job in self.singletons]

    async def _stop_singletons(self) -> None:
        for job in self.singletons:
            job.stop()
        runs = self._singleton_runs
        self.singletons, self._singleton_runs, self.heartbeat = [], [], None
        await asyncio.gather(*(_stopped(run, SINGLETON_STOP_TIMEOUT, "flow job", self._log) for run in runs))


async def _stopped(run: asyncio.Task[None], timeout: float, what: str, logger: Any) -> None:
    """Wait for a stopping task; cancel it when it does not finish within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(asyncio.shield(run), timeout)
        return
    except TimeoutError:
        logger.warning(f"{what} did not stop in time; cancelled", timeout_s=timeout)
    except asyncio.CancelledError:
        if _cancelling():  # we are cancelled: take the task along
            run.cancel()
            raise
        return  # the task itself ended cancelled: it is stopped all the same
    run.cancel()
    try:
        await run
    except asyncio.CancelledError:
        if _cancelling():
            raise


def _cancelling() -> bool:
    """Whether the current task is being cancelled (rather than awaiting a task that was)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


class Worker:
    """Runs the tasks of every active flow that Kafka assigns to this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # host:pid, plus a random tag: containers on the host network all run as pid 1 on one host name.
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.config_digest = config_digest(settings)  # in the group's client ids: workers compare them
        self.flows = [FlowRunner(settings, f) for f in settings.active_flows()]
        self.memberships: dict[str, GroupMembership] = {}
        self._stopping = asyncio.Event()

    def status(self, clusters: Mapping[str, Mapping[str, ClusterStatus]] | None = None) -> WorkerStatus:
        """A snapshot of this worker: every flow with its tasks and jobs, and readiness derived from them.
        ``clusters``: the last connectivity checks, flow name -> cluster alias -> check."""
        checks = clusters or {}
        flows = (runner.snapshot(checks.get(runner.flow.name)) for runner in self.flows)
        return WorkerStatus.of(__version__, self.id, flows, self.config_digest)

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: flushing in-flight batches and storing progress")
            self._stopping.set()

    async def run(self) -> None:
        log.info("worker starting", worker=self.id, flows=[f.flow.name for f in self.flows])
        by_target: dict[str, list[FlowRunner]] = {}
        for runner in self.flows:
            by_target.setdefault(runner.flow.target, []).append(runner)
        async with asyncio.TaskGroup() as tg:
            for runner in self.flows:
                tg.create_task(runner.run())
            for target, runners in by_target.items():
                tg.create_task(self._member(target, runners))
            await self._stopping.wait()
        log.info("worker stopped", worker=self.id)

    async def _member(self, target: str, runners: list[FlowRunner]) -> None:
        """Membership in the coordination group on one target cluster, for the flows writing to it."""
        try:

            async def all_prepared() -> None:
                await asyncio.gather(*(r.prepared.wait() for r in runners))

            async def stopping() -> None:
                await self._stopping.wait()

            waiters = [asyncio.ensure_future(all_prepared()), asyncio.ensure_future(stopping())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if self._stopping.is_set():
                return
            by_topic = {r.tasks_topic: r for r in runners}

            async def assigned(tasks: set[TaskRef], task_counts: dict[str, int]) -> None:
                log.info("tasks assigned", worker=self.id, tasks=sorted(f"{t}/{i}" for t, i in tasks))
                for topic, runner in by_topic.items():
                    await runner.set_task_count(task_counts.get(topic))
                for topic, index in sorted(tasks):
                    await by_topic[topic].start_task(index)

            async def revoked(tasks: set[TaskRef]) -> None:
                await asyncio.gather(*(by_topic[topic].stop_task(index) for topic, index in tasks))

            cluster = self.settings.cluster(target)
            membership = GroupMembership(
                cluster,
                self.settings.service.group,
                list(by_topic),
                on_assigned=assigned,
                on_revoked=revoked,
                client_id=f"mirror-worker|{self.id}|{target}|{self.config_digest}",
                task_limits={topic: runner.task_limit for topic, runner in by_topic.items()},
            )
            self.memberships[target] = membership

            async def stop_local_tasks() -> None:
                await asyncio.gather(*(r.stop_all_tasks() for r in runners))

            async def member() -> None:
                try:
                    # Local tasks stop (flush, store progress) before the group is left, so the next
                    # owner resumes from the progress they stored.
                    await membership.run(self._stopping, before_leaving=stop_local_tasks)
                except MirrorError:
                    await stop_local_tasks()  # out of the group: our tasks may already run elsewhere
                    raise

            await _retrying(f"group membership on {target}", member, self._stopping)
        finally:
            for runner in runners:
                runner.stop()
