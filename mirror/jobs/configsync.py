"""Topic config sync and topic ACL sync of a flow (Java `MirrorSourceConnector`, docs/mm2-compat.md §4).

Config sync, every ``sync.topic.configs.interval.seconds``: for each remote topic this flow replicates
into (its `topic_source` is the flow's source and its upstream topic is one the flow replicates, as MM2
decides), read the source topic's configs, filter them as MM2 does (read-only, sensitive, static-broker
and ``config.properties.exclude`` entries are dropped; a source default resets the target's value unless
``use.defaults.from=source``) and apply them with IncrementalAlterConfigs. Only the properties that
would change are sent, so the target's own excluded settings (e.g. ``min.insync.replicas``) are never
touched, and ``mirror validate`` can print exactly what the next sync will do.

ACL sync, every ``sync.topic.acls.interval.seconds``: the source's LITERAL topic ACLs of replicated
topics, except ALLOW WRITE, renamed to the remote topic, ALLOW ALL downgraded to ALLOW READ, created on
the target (those not already there). A source without an authorizer is logged once and skipped. Target
ACLs are never deleted.

Both are planned first (pure functions below), then applied. Errors are per topic: logged once per
distinct error, counted in ``mirror_errors_total`` and retried next round; the other topics go on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from mirror import metrics
from mirror.config import FlowSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed, KafkaUnavailable, MirrorError
from mirror.kafka import Admin, ConfigEntry
from mirror.kafka.configs import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    create_acls,
    describe_topic_acls,
    incremental_alter_topic_configs,
)
from mirror.mm2.policy import ReplicationPolicy
from mirror.mm2.topic_configs import ConfigOp, ConfigPropertyFilter, ConfigSource, config_sync_ops
from mirror.replication.remote_topics import TopicSync
from mirror.retry import Backoff, retrying

__all__ = [
    "AclSyncPlan",
    "ConfigOpTuple",
    "ConfigSyncJob",
    "ConfigSyncPlan",
    "plan_acl_sync",
    "plan_config_sync",
    "synced_topics",
    "target_acl",
]

log = structlog.get_logger(__name__)

ConfigOpTuple = tuple[str, ConfigOp, str | None]
"""(config name, "SET" | "DELETE", value) as sent with IncrementalAlterConfigs."""

_DESCRIBE_CHUNK: Final = 500  # topics per DescribeConfigs request
_STOP_GRACE: Final = 5.0
_LOGGED_TOPICS: Final = 10
_UNKNOWN_TOPIC: Final = 3  # UNKNOWN_TOPIC_OR_PARTITION


# --- pure planning -------------------------------------------------------------------------------------


def synced_topics(
    policy: ReplicationPolicy,
    source_alias: str,
    source_topics: Iterable[str],
    target_topics: Iterable[str],
    replicates: Callable[[str], bool],
) -> dict[str, str]:
    """Remote topic -> upstream topic, for the target topics this flow replicates into (Java MM2's
    "topics being replicated"): `topic_source(t)` is the flow's source and the upstream topic exists on
    the source and is replicated. Nothing else on the target is ever touched."""
    upstreams = set(source_topics)
    pairs: dict[str, str] = {}
    for remote in sorted(target_topics):
        if policy.topic_source(remote) != source_alias:
            continue
        upstream = policy.upstream_topic(remote)
        if (
            upstream is not None
            and upstream in upstreams
            and replicates(upstream)
            and policy.format_remote_topic(source_alias, upstream) == remote
        ):
            pairs[remote] = upstream
    return pairs


def _tuples(entries: Iterable[ConfigEntry]) -> list[tuple[str, str | None, bool, bool, int]]:
    return [(e.name, e.value, e.read_only, e.is_sensitive, e.source) for e in entries]


def plan_config_sync(
    source_configs: Mapping[str, Sequence[ConfigEntry]],
    target_configs: Mapping[str, Sequence[ConfigEntry]],
    topics: Mapping[str, str],
    prop_filter: ConfigPropertyFilter,
) -> dict[str, list[ConfigOpTuple]]:
    """The IncrementalAlterConfigs operations that change something, per remote topic (topics needing
    none are left out).

    `topics` maps remote topic -> upstream topic; `source_configs` holds the upstream topics' entries,
    `target_configs` the remote topics' (both from DescribeConfigs). MM2's ops (`config_sync_ops`) are
    kept when they have an effect: SET unless the target topic already overrides the property with that
    value, DELETE only where the target topic overrides it.
    """
    plan: dict[str, list[ConfigOpTuple]] = {}
    for remote, upstream in sorted(topics.items()):
        if upstream not in source_configs or remote not in target_configs:
            continue
        current = {e.name: e for e in target_configs[remote]}
        ops: list[ConfigOpTuple] = []
        for name, op, value in config_sync_ops(_tuples(source_configs[upstream]), prop_filter):
            have = current.get(name)
            overridden = have is not None and have.source == ConfigSource.DYNAMIC_TOPIC_CONFIG
            if op == "DELETE":
                if overridden:
                    ops.append((name, "DELETE", None))
            elif value is not None and not (overridden and have is not None and have.value == value):
                ops.append((name, "SET", value))
        if ops:
            plan[remote] = ops
    return plan


def target_acl(binding: AclBinding, remote: Callable[[str], str]) -> AclBinding:
    """The target's binding for a source topic ACL: the resource renamed (LITERAL), ALLOW ALL -> READ."""
    operation = binding.operation
    if binding.permission == AclPermission.ALLOW and operation == AclOperation.ALL:
        operation = AclOperation.READ
    return AclBinding(
        ResourceType.TOPIC,
        remote(binding.name),
        PatternType.LITERAL,
        binding.principal,
        binding.host,
        operation,
        binding.permission,
    )


def _syncable_acl(binding: AclBinding, replicates: Callable[[str], bool]) -> bool:
    """Java `MirrorSourceConnector.syncTopicAcls` filters: TOPIC, LITERAL, not ALLOW WRITE, replicated.

    The LITERAL wildcard ``*`` (every topic) is skipped: renamed it would grant on a topic named
    ``A.*``, which cannot exist (Java creates that useless binding)."""
    return (
        binding.resource_type == ResourceType.TOPIC
        and binding.pattern_type == PatternType.LITERAL
        and not (binding.permission == AclPermission.ALLOW and binding.operation == AclOperation.WRITE)
        and binding.name != "*"
        and replicates(binding.name)
    )


def plan_acl_sync(
    source_acls: Iterable[AclBinding],
    replicates: Callable[[str], bool],
    remote: Callable[[str], str],
    existing: Iterable[AclBinding] | None = None,
) -> list[AclBinding]:
    """The target ACLs to create (sorted, no duplicates): the source's syncable topic ACLs mapped with
    `target_acl`, minus those `existing` on the target (None: unknown, create them all)."""
    have = set(existing or ())
    wanted = {target_acl(b, remote) for b in source_acls if _syncable_acl(b, replicates)}
    return sorted(wanted - have)


@dataclass
class ConfigSyncPlan:
    """What the next config sync changes: `changes` per remote topic; `errors` for topics whose configs
    could not be read (they are reported and retried)."""

    topics: dict[str, str] = field(default_factory=dict)  # remote topic -> upstream topic
    changes: dict[str, list[ConfigOpTuple]] = field(default_factory=dict)
    errors: dict[str, MirrorError] = field(default_factory=dict)


@dataclass
class AclSyncPlan:
    """What the next ACL sync creates. `source_authorizer` False: the source has none, nothing to do;
    `target_authorizer` False: the target has none, nothing can be created; `target_known` False: the
    target's ACLs could not be read (not authorized), so every wanted ACL is (re)created."""

    source_authorizer: bool = True
    target_authorizer: bool = True
    target_known: bool = True
    create: list[AclBinding] = field(default_factory=list)


def _gone(result: object) -> bool:
    """DescribeConfigs answered UNKNOWN_TOPIC_OR_PARTITION (topic lists are eventually consistent)."""
    return isinstance(result, KafkaRequestFailed) and result.code == _UNKNOWN_TOPIC


# --- the job -------------------------------------------------------------------------------------------


class ConfigSyncJob:
    """Syncs topic configs and topic ACLs of one flow on their intervals until `stop()`."""

    def __init__(
        self,
        flow: FlowSettings,
        source_admin: Admin,
        target_admin: Admin,
        policy: ReplicationPolicy,
    ) -> None:
        self.flow = flow
        self.source_admin = source_admin
        self.target_admin = target_admin
        self.policy = policy
        self.topics = TopicSync(flow, source_admin, target_admin, policy)
        self.configs_synced = 0  # properties changed on remote topics
        self.acls_created = 0
        self._labels = (flow.source, flow.target)
        self._round_errors: dict[str, str] = {}  # "configs" | "acls" -> error of the last round
        self._topic_errors: dict[str, dict[str, str]] = {"configs": {}, "acls": {}}
        self._no_authorizer_logged = False
        self._stopping = asyncio.Event()
        self._log = log.bind(flow=flow.name, job="configsync")

    @property
    def last_error(self) -> str | None:
        """The error of a failed round, else the first topic still failing (for /status)."""
        for kind in ("configs", "acls"):
            if kind in self._round_errors:
                return f"{kind} sync: {self._round_errors[kind]}"
        for kind in ("configs", "acls"):
            errors = self._topic_errors[kind]
            if errors:
                topic, text = min(errors.items())
                more = f" (and {len(errors) - 1} more topics)" if len(errors) > 1 else ""
                return f"{kind} sync of {topic}: {text}{more}"
        return None

    @property
    def topic_errors(self) -> dict[str, str]:
        """Remote topic -> its last config or ACL sync error."""
        return {**self._topic_errors["acls"], **self._topic_errors["configs"]}

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        flow = self.flow
        loops: list[Coroutine[Any, Any, None]] = []
        if flow.sync_topic_configs_enabled:
            loops.append(self._loop("configs", self.sync_configs, flow.sync_topic_configs_interval_seconds))
        if flow.sync_topic_acls_enabled:
            loops.append(self._loop("acls", self.sync_acls, flow.sync_topic_acls_interval_seconds))
        if not loops:
            return
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(loop) for loop in loops]
            await self._stopping.wait()
            # A round in progress finishes (its changes are idempotent anyway); one stuck in a request
            # is cancelled after a short grace.
            await asyncio.wait(tasks, timeout=_STOP_GRACE)
            for task in tasks:
                task.cancel()

    async def _loop(self, kind: str, sync: Callable[[], Awaitable[object]], interval: float) -> None:
        """Java schedules both syncs from time 0, then every interval (a failed round too)."""

        def failed(exc: Exception) -> MirrorError:
            assert isinstance(exc, MirrorError)
            metrics.errors_total.labels(*self._labels, exc.kind).inc()
            self._round_errors[kind] = str(exc)
            return exc

        def succeeded() -> None:
            if self._round_errors.pop(kind, None) is not None:
                self._log.info(f"topic {kind} sync works again")

        await retrying(
            f"topic {kind} sync",
            sync,
            stopping=self._stopping,
            backoff=Backoff(interval, interval),
            log=self._log,
            on_error=failed,
            on_success=succeeded,
            every=interval,
            quiet_repeats=True,
        )

    def _settle(self, kind: str, errors: Mapping[str, MirrorError]) -> None:
        """Record this round's per-topic errors: each counted, logged once per distinct error."""
        old = self._topic_errors[kind]
        new: dict[str, str] = {}
        fresh: dict[tuple[str, str], list[str]] = defaultdict(list)
        for topic, err in sorted(errors.items()):
            text = new[topic] = str(err)
            metrics.errors_total.labels(*self._labels, err.kind).inc()
            if old.get(topic) != text:
                fresh[(text, err.kind)].append(topic)
        for (text, err_kind), topics in fresh.items():
            self._log.warning(
                f"cannot sync topic {kind}; will retry",
                topics=topics[:_LOGGED_TOPICS],
                count=len(topics),
                error=text,
                kind=err_kind,
            )
        recovered = sorted(old.keys() - new.keys())
        if recovered:
            self._log.info(
                f"topic {kind} in sync again", topics=recovered[:_LOGGED_TOPICS], count=len(recovered)
            )
        self._topic_errors[kind] = new

    # --- configs ---------------------------------------------------------------------------------

    async def _describe(
        self, admin: Admin, topics: Sequence[str]
    ) -> dict[str, list[ConfigEntry] | MirrorError]:
        result: dict[str, list[ConfigEntry] | MirrorError] = {}
        for i in range(0, len(topics), _DESCRIBE_CHUNK):
            result.update(await admin.describe_topic_configs(topics[i : i + _DESCRIBE_CHUNK]))
        return result

    async def plan_configs(self) -> ConfigSyncPlan:
        """Read both sides and compute the config changes of the next sync (changes nothing)."""
        source_topics = await self.source_admin.list_topics()
        target_topics = await self.target_admin.list_topics()
        pairs = synced_topics(
            self.policy, self.flow.source, source_topics, target_topics, self.topics.replicates
        )
        plan = ConfigSyncPlan(topics=pairs)
        if not pairs:
            return plan
        source = await self._describe(self.source_admin, sorted(set(pairs.values())))
        target = await self._describe(self.target_admin, sorted(pairs))
        source_ok: dict[str, list[ConfigEntry]] = {}
        target_ok: dict[str, list[ConfigEntry]] = {}
        for remote, upstream in pairs.items():
            src, tgt = source.get(upstream), target.get(remote)
            if _gone(src) or _gone(tgt):
                continue  # deleted since listed, or not yet known to every broker: next round
            if isinstance(src, MirrorError) or src is None:
                plan.errors[remote] = src or KafkaRequestFailed(f"no configs of source topic {upstream}")
            elif isinstance(tgt, MirrorError) or tgt is None:
                plan.errors[remote] = tgt or KafkaRequestFailed(f"no configs of target topic {remote}")
            else:
                source_ok[upstream], target_ok[remote] = src, tgt
        plan.changes = plan_config_sync(source_ok, target_ok, pairs, self.topics.config_filter)
        return plan

    async def apply_configs(self, plan: ConfigSyncPlan) -> dict[str, MirrorError | None]:
        """Send the planned changes; returns per changed topic None (applied) or its error."""
        results = await incremental_alter_topic_configs(self.target_admin, plan.changes)
        for remote, err in results.items():
            if err is None:
                ops = plan.changes[remote]
                self.configs_synced += len(ops)
                self._log.info(
                    "synced remote topic configs",
                    topic=remote,
                    set={n: v for n, op, v in ops if op == "SET"},
                    reset=[n for n, op, _ in ops if op == "DELETE"],
                )
        errors = {**plan.errors, **{t: e for t, e in results.items() if e is not None}}
        self._settle("configs", errors)
        return results

    async def sync_configs(self) -> ConfigSyncPlan:
        """One config sync round: plan, then apply. Returns the plan it applied."""
        plan = await self.plan_configs()
        await self.apply_configs(plan)
        return plan

    # --- ACLs ------------------------------------------------------------------------------------

    async def plan_acls(self) -> AclSyncPlan:
        """Read both sides' topic ACLs and compute those the next sync creates (changes nothing)."""
        source = await describe_topic_acls(self.source_admin)
        if source is None:
            return AclSyncPlan(source_authorizer=False)
        plan = AclSyncPlan()
        existing: list[AclBinding] | None = None
        try:
            existing = await describe_topic_acls(self.target_admin)
            if existing is None:
                plan.target_authorizer = False
        except KafkaUnavailable:
            raise
        except (AuthorizationFailed, KafkaRequestFailed) as exc:
            plan.target_known = False
            self._log.debug("cannot read the target's ACLs; creating all", error=str(exc))
        plan.create = plan_acl_sync(source, self.topics.replicates, self.topics.remote, existing)
        return plan

    async def apply_acls(self, plan: AclSyncPlan) -> list[MirrorError | None]:
        """Create the planned ACLs; returns per binding None (created) or its error."""
        if not plan.source_authorizer:
            if not self._no_authorizer_logged:
                self._log.info("source cluster has no authorizer; topic ACLs are not synced")
                self._no_authorizer_logged = True
            self._settle("acls", {})
            return []
        self._no_authorizer_logged = False
        if not plan.target_authorizer:
            if plan.create:
                raise KafkaRequestFailed(
                    f"the target cluster has no authorizer: {len(plan.create)} ACL(s) cannot be created",
                    code=54,
                    kind="security_disabled",
                )
            self._settle("acls", {})
            return []
        results = await create_acls(self.target_admin, plan.create)
        errors: dict[str, MirrorError] = {}
        for binding, err in zip(plan.create, results, strict=True):
            if err is None:
                self.acls_created += 1
                self._log.info("created remote topic ACL", topic=binding.name, acl=str(binding))
            else:
                errors.setdefault(binding.name, err)
        self._settle("acls", errors)
        return results

    async def sync_acls(self) -> AclSyncPlan:
        """One ACL sync round: plan, then apply. Returns the plan it applied."""
        plan = await self.plan_acls()
        await self.apply_acls(plan)
        return plan
