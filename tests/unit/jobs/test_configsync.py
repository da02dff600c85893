"""Config and ACL sync: planning (pure), the wire formats of the added requests, and the job with a fake
admin client (no broker)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka.errors as ke
import pytest
import structlog
from aiokafka.protocol.admin import CreateAclsResponse_v1, DescribeAclsResponse_v1

from mirror import metrics
from mirror.cli.validate import acl_rows, config_rows
from mirror.config import FlowSettings
from mirror.errors import KafkaRequestFailed, KafkaUnavailable, MirrorError
from mirror.jobs.configsync import (
    AclSyncPlan,
    ConfigSyncJob,
    ConfigSyncPlan,
    plan_acl_sync,
    plan_config_sync,
    synced_topics,
    target_acl,
)
from mirror.kafka import ConfigEntry
from mirror.kafka.configs import (
    AclBinding,
    AclOperation,
    AclPermission,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsRequest_v0,
    IncrementalAlterConfigsResponse_v0,
    PatternType,
    ResourceType,
    _CreateAcls,
    _DescribeTopicAcls,
    create_acls,
    describe_topic_acls,
    incremental_alter_topic_configs,
)
from mirror.mm2.filters import TopicFilter
from mirror.mm2.policy import DefaultReplicationPolicy, IdentityReplicationPolicy
from mirror.mm2.topic_configs import ConfigPropertyFilter

POLICY = DefaultReplicationPolicy()
FILTER = ConfigPropertyFilter()
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = AclPermission.ALLOW, AclPermission.DENY
READ, WRITE, ALL, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.ALL, AclOperation.DESCRIBE


def entry(
    name: str, value: str | None, source: int = 1, read_only: bool = False, sensitive: bool = False
) -> Any:
    return ConfigEntry(name, value, read_only, sensitive, source)


def acl(
    name: str,
    op: AclOperation = READ,
    permission: AclPermission = ALLOW,
    pattern: PatternType = LITERAL,
    principal: str = "User:alice",
    rtype: ResourceType = TOPIC,
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", op, permission)


# --- which topics are synced ---------------------------------------------------------------------------


def test_synced_topics_are_remote_topics_of_this_source_whose_upstream_is_replicated() -> None:
    replicated = TopicFilter(["orders.*", "heartbeats"]).matches
    source = ["orders", "orders-eu", "payments", "heartbeats"]
    target = ["A.orders", "A.orders-eu", "A.payments", "C.orders", "orders", "A.gone", "A.heartbeats", "B.x"]
    pairs = synced_topics(POLICY, "A", source, target, replicated)
    # A.payments: not replicated; C.orders: another source; orders: a local topic; A.gone: no upstream
    assert pairs == {"A.orders": "orders", "A.orders-eu": "orders-eu", "A.heartbeats": "heartbeats"}


def test_synced_topics_with_identity_policy() -> None:
    policy = IdentityReplicationPolicy("A")
    pairs = synced_topics(policy, "A", ["orders", "x"], ["orders", "local-only"], lambda t: t != "x")
    assert pairs == {"orders": "orders"}


# --- config planning -----------------------------------------------------------------------------------


def test_config_plan_sets_changed_values_only() -> None:
    source = {
        "t": [
            entry("retention.ms", "1000"),
            entry("cleanup.policy", "compact"),
            entry("max.message.bytes", "2000"),  # same override on the target: nothing to do
            entry("segment.bytes", "4096", source=2),  # a dynamic broker value counts as non-default
            entry("compression.type", "zstd", source=3),  # already the target's broker default
        ]
    }
    target = {
        "A.t": [
            entry("retention.ms", "5", source=1),
            entry("cleanup.policy", "delete", source=5),
            entry("max.message.bytes", "2000", source=1),
            entry("segment.bytes", "4096", source=5),
            entry("compression.type", "zstd", source=2),
        ]
    }
    plan = plan_config_sync(source, target, {"A.t": "t"}, FILTER)
    assert plan == {
        "A.t": [
            ("retention.ms", "SET", "1000"),
            ("cleanup.policy", "SET", "compact"),
            ("segment.bytes", "SET", "4096"),  # equal value but not a topic override yet (Java sets it)
            ("compression.type", "SET", "zstd"),
        ]
    }


def test_config_plan_resets_only_target_overrides_of_source_defaults() -> None:
    source = {
        "t": [entry("retention.ms", "604800000", source=5), entry("cleanup.policy", "delete", source=5)]
    }
    target = {"A.t": [entry("retention.ms", "1", source=1), entry("cleanup.policy", "delete", source=5)]}
    assert plan_config_sync(source, target, {"A.t": "t"}, FILTER) == {
        "A.t": [("retention.ms", "DELETE", None)]
    }


def test_config_plan_never_touches_excluded_read_only_sensitive_or_static_properties() -> None:
    source = {
        "t": [
            entry("min.insync.replicas", "1", source=5),  # excluded (default list)
            entry("unclean.leader.election.enable", "true"),  # excluded
            entry("message.format.version", "3.0", read_only=True),
            entry("secret", None, sensitive=True),
            entry("segment.ms", "10", source=4),  # static broker config
        ]
    }
    target = {
        "A.t": [
            entry("min.insync.replicas", "2", source=1),  # set by hand on the target: left as it is
            entry("unclean.leader.election.enable", "false", source=1),
        ]
    }
    assert plan_config_sync(source, target, {"A.t": "t"}, FILTER) == {}


def test_config_plan_with_defaults_from_source_and_custom_exclude() -> None:
    prop_filter = ConfigPropertyFilter(["retention\\..*"], use_defaults_from="source")
    source = {"t": [entry("retention.ms", "5"), entry("cleanup.policy", "delete", source=5)]}
    target = {"A.t": [entry("retention.ms", "9", source=1), entry("cleanup.policy", "compact", source=1)]}
    plan = plan_config_sync(source, target, {"A.t": "t"}, prop_filter)
    assert plan == {"A.t": [("cleanup.policy", "SET", "delete")]}


def test_config_plan_skips_topics_without_configs_on_either_side() -> None:
    source = {"t": [entry("retention.ms", "5")]}
    assert plan_config_sync(source, {}, {"A.t": "t", "A.u": "u"}, FILTER) == {}


def test_config_plan_is_idempotent_once_applied() -> None:
    source = {"t": [entry("retention.ms", "5"), entry("cleanup.policy", "delete", source=5)]}
    target = {"A.t": [entry("retention.ms", "5", source=1), entry("cleanup.policy", "delete", source=5)]}
    assert plan_config_sync(source, target, {"A.t": "t"}, FILTER) == {}


# --- ACL planning --------------------------------------------------------------------------------------


def remote(topic: str) -> str:
    return POLICY.format_remote_topic("A", topic)


def test_target_acl_renames_and_downgrades_allow_all() -> None:
    assert target_acl(acl("t", ALL), remote) == acl("A.t", READ)
    assert target_acl(acl("t", ALL, DENY), remote) == acl("A.t", ALL, DENY)
    assert target_acl(acl("t", DESCRIBE), remote) == acl("A.t", DESCRIBE)


def test_acl_plan_filters_like_mm2() -> None:
    source = [
        acl("t", READ),
        acl("t", WRITE),  # ALLOW WRITE: never synced
        acl("t", WRITE, DENY),  # DENY entries are copied
        acl("t", ALL, principal="User:bob"),  # -> READ
        acl("t", pattern=PREFIXED),
        acl("t", rtype=GROUP),
        acl("not-replicated", READ),
        acl("*", READ),  # the literal wildcard: no topic named A.* can exist
    ]
    plan = plan_acl_sync(source, lambda t: t != "not-replicated", remote)
    assert plan == sorted([acl("A.t", READ), acl("A.t", WRITE, DENY), acl("A.t", READ, principal="User:bob")])


def test_acl_plan_leaves_out_existing_and_duplicate_bindings() -> None:
    source = [acl("t", READ), acl("t", ALL), acl("u", DESCRIBE)]
    existing = [acl("A.t", READ), acl("A.other", WRITE)]
    assert plan_acl_sync(source, lambda t: True, remote, existing) == [acl("A.u", DESCRIBE)]
    assert plan_acl_sync(source, lambda t: True, remote, None) == [acl("A.t", READ), acl("A.u", DESCRIBE)]


def test_acl_binding_str() -> None:
    assert str(acl("A.t")) == "ALLOW User:alice from * READ on TOPIC:A.t (LITERAL)"


# --- wire formats ----------------------------------------------------------------------------------------


def test_incremental_alter_configs_v0_encoding() -> None:
    request = IncrementalAlterConfigsRequest([(2, "t", [("retention.ms", 0, "5"), ("x", 1, None)])])
    struct = request.prepare({44: (0, 1)})
    assert isinstance(struct, IncrementalAlterConfigsRequest_v0)
    expected = (
        b"\x00\x00\x00\x01"  # resources
        + b"\x02\x00\x01t"
        + b"\x00\x00\x00\x02"  # configs
        + b"\x00\x0cretention.ms\x00\x00\x015"
        + b"\x00\x01x\x01\xff\xff"  # DELETE, null value
        + b"\x00"  # validate_only
    )
    assert struct.encode() == expected
    with pytest.raises(NotImplementedError):
        request.prepare({44: (2, 3)})


def test_incremental_alter_configs_v0_response_decoding() -> None:
    raw = b"\x00\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x00\xff\xff\x02\x00\x01a"
    raw += b"\x00\x2c\x00\x04nope\x02\x00\x01b"
    response = IncrementalAlterConfigsResponse_v0.decode(raw)
    assert response.responses == [(0, None, 2, "a"), (44, "nope", 2, "b")]


def test_acl_requests_encoding() -> None:
    describe = _DescribeTopicAcls().prepare({29: (1, 3)})
    assert describe.encode() == b"\x02\xff\xff\x01\xff\xff\xff\xff\x01\x01"
    create = _CreateAcls([acl("A.t", READ), acl("A.u", DESCRIBE, DENY)]).prepare({30: (1, 3)})
    assert create.creations == [
        (2, "A.t", 3, "User:alice", "*", 3, 3),
        (2, "A.u", 3, "User:alice", "*", 8, 2),
    ]
    v0 = _CreateAcls([acl("A.t", READ)]).prepare({30: (0, 0)})
    assert v0.creations == [(2, "A.t", "User:alice", "*", 3, 3)]


# --- admin functions over a fake client --------------------------------------------------------------


class FakeClient:
    """Answers requests like a broker would; `versions` is what it advertises."""

    def __init__(
        self,
        handler: Callable[[Any], Any],
        versions: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.handler = handler
        self.versions = dict(versions or {29: (1, 3), 30: (1, 3), 44: (0, 1)})
        self.sent: list[Any] = []

    async def raw_request(self, request: Any, node_id: int | None = None) -> Any:
        struct = request.prepare(self.versions)  # as aiokafka's connection does
        self.sent.append(struct)
        return self.handler(struct)


def admin_over(client: FakeClient) -> Any:
    return types.SimpleNamespace(raw_request=client.raw_request)


def alter_answer(codes: Mapping[str, int]) -> Callable[[Any], Any]:
    def handler(struct: Any) -> Any:
        return types.SimpleNamespace(
            responses=[(codes.get(name, 0), None, rtype, name) for rtype, name, _ in struct.resources]
        )

    return handler


async def test_incremental_alter_reports_per_topic_errors() -> None:
    client = FakeClient(alter_answer({"b": 44, "c": 29}))
    ops = {
        "a": [("retention.ms", "SET", "5")],
        "b": [("x", "DELETE", None)],
        "c": [("y", "SET", "1")],
        "d": [],
    }
    result = await incremental_alter_topic_configs(admin_over(client), ops)
    assert result["a"] is None
    assert isinstance(result["b"], KafkaRequestFailed) and result["b"].kind == "policy_violation"
    assert isinstance(result["c"], MirrorError) and result["c"].kind == "authorization"
    assert "d" not in result  # nothing to send
    assert [r[1] for r in client.sent[0].resources] == ["a", "b", "c"]
    assert client.sent[0].resources[1][2] == [("x", 1, None)]


async def test_incremental_alter_unsupported_by_the_broker() -> None:
    client = FakeClient(alter_answer({}), versions={29: (1, 3)})  # no API 44 at all
    result = await incremental_alter_topic_configs(admin_over(client), {"a": [("x", "SET", "1")]})
    assert isinstance(result["a"], KafkaRequestFailed) and result["a"].kind == "unsupported_version"
    client = FakeClient(alter_answer({}), versions={44: (5, 6)})  # no version both sides speak
    result = await incremental_alter_topic_configs(admin_over(client), {"a": [("x", "SET", "1")]})
    assert isinstance(result["a"], KafkaRequestFailed) and result["a"].kind == "unsupported_version"


async def test_incremental_alter_raises_when_unreachable() -> None:
    def handler(struct: Any) -> Any:
        raise ke.KafkaConnectionError("down")

    with pytest.raises(KafkaUnavailable):
        await incremental_alter_topic_configs(admin_over(FakeClient(handler)), {"a": [("x", "SET", "1")]})


async def test_describe_topic_acls() -> None:
    def handler(struct: Any) -> Any:
        return DescribeAclsResponse_v1(
            0,
            0,
            None,
            [
                (2, "t", 3, [("User:a", "*", 3, 3), ("User:b", "*", 99, 3)]),
                (2, "p-", 4, [("User:a", "*", 4, 3)]),
            ],
        )

    acls = await describe_topic_acls(admin_over(FakeClient(handler)))
    assert acls == [
        acl("t", READ, principal="User:a"),
        acl("t", AclOperation.UNKNOWN, principal="User:b"),
        acl("p-", WRITE, pattern=PREFIXED, principal="User:a"),
    ]


async def test_describe_topic_acls_without_authorizer_and_when_refused() -> None:
    disabled = FakeClient(lambda s: DescribeAclsResponse_v1(0, 54, "No Authorizer is configured", []))
    assert await describe_topic_acls(admin_over(disabled)) is None
    refused = FakeClient(lambda s: DescribeAclsResponse_v1(0, 31, "denied", []))
    with pytest.raises(MirrorError) as info:
        await describe_topic_acls(admin_over(refused))
    assert info.value.kind == "authorization"


async def test_create_acls_per_binding_errors() -> None:
    client = FakeClient(lambda s: CreateAclsResponse_v1(0, [(0, None), (44, "policy says no")]))
    results = await create_acls(admin_over(client), [acl("A.t"), acl("A.u")])
    assert results[0] is None
    assert isinstance(results[1], KafkaRequestFailed) and "policy says no" in str(results[1])
    assert len(client.sent) == 1 and len(client.sent[0].creations) == 2  # one request for all
    assert await create_acls(admin_over(client), []) == []


# --- the job -----------------------------------------------------------------------------------------


class FakeAdmin:
    """`Admin` for the job: topics and configs from dicts, requests through a `FakeClient`."""

    def __init__(self, topics: dict[str, list[ConfigEntry]], client: FakeClient) -> None:
        self.topics = topics
        self._client = client
        self.describe_errors: dict[str, MirrorError] = {}

    async def raw_request(self, request: Any, node_id: int | None = None) -> Any:
        return await self._client.raw_request(request, node_id)

    async def list_topics(self) -> dict[str, int]:
        return dict.fromkeys(self.topics, 1)

    async def describe_topic_configs(self, topics: list[str]) -> dict[str, Any]:
        return {t: self.describe_errors.get(t) or list(self.topics[t]) for t in topics}


def flow(**extra: Any) -> FlowSettings:
    return FlowSettings(source="A", target="B", enabled=True, **extra)


def make_job(
    source_topics: dict[str, list[ConfigEntry]],
    target_topics: dict[str, list[ConfigEntry]],
    alter_codes: Mapping[str, int] | None = None,
    **settings: Any,
) -> tuple[ConfigSyncJob, FakeAdmin, FakeAdmin]:
    source = FakeAdmin(source_topics, FakeClient(lambda s: DescribeAclsResponse_v1(0, 54, None, [])))
    target = FakeAdmin(target_topics, FakeClient(alter_answer(alter_codes or {})))
    job = ConfigSyncJob(flow(**settings), source, target, POLICY)  # type: ignore[arg-type]
    return job, source, target


def errors_count(kind: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mirror_errors_total", {"source": "A", "target": "B", "kind": kind}
    )
    return value or 0.0


async def test_job_syncs_configs_and_reports_bad_topics_once() -> None:
    source = {
        "good": [entry("retention.ms", "5")],
        "bad": [entry("retention.ms", "7")],
        "unreadable": [entry("retention.ms", "9")],
    }
    target = {"A.good": [], "A.bad": [], "A.unreadable": [], "A.not-there": [], "local": []}
    job, src, tgt = make_job(source, target, alter_codes={"A.bad": 44})
    src.describe_errors["unreadable"] = KafkaRequestFailed("describe configs of unreadable: boom")
    before = errors_count("policy_violation")
    with structlog.testing.capture_logs() as logs:
        plan = await job.sync_configs()
        await job.sync_configs()
    assert plan.topics == {"A.good": "good", "A.bad": "bad", "A.unreadable": "unreadable"}
    assert plan.changes == {"A.good": [("retention.ms", "SET", "5")], "A.bad": [("retention.ms", "SET", "7")]}
    assert set(plan.errors) == {"A.unreadable"}
    assert errors_count("policy_violation") == before + 2  # counted every round
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 2  # logged once per distinct error: the policy violation and the read error
    assert set(job.topic_errors) == {"A.bad", "A.unreadable"}
    assert job.last_error is not None and "A.bad" in job.last_error
    sent = [r[1] for s in tgt._client.sent for r in s.resources]
    assert sent == ["A.bad", "A.good", "A.bad", "A.good"]  # nothing for A.unreadable, never local topics

    # the policy is fixed and the topic becomes readable: errors clear
    tgt._client.handler = alter_answer({})
    src.describe_errors.clear()
    await job.sync_configs()
    assert job.topic_errors == {}
    assert job.last_error is None


async def test_job_acl_sync_without_source_authorizer_logs_once() -> None:
    job, _, _ = make_job({}, {})
    with structlog.testing.capture_logs() as logs:
        plan = await job.sync_acls()
        await job.sync_acls()
    assert plan == AclSyncPlan(source_authorizer=False)
    assert len([e for e in logs if "no authorizer" in e["event"]]) == 1
    assert job.last_error is None


async def test_job_acl_sync_creates_missing_acls() -> None:
    job, src, tgt = make_job({"t": [], "u": []}, {"A.t": []})
    src._client.handler = lambda s: DescribeAclsResponse_v1(
        0,
        0,
        None,
        [(2, "t", 3, [("User:a", "*", 3, 3), ("User:a", "*", 4, 3)]), (2, "u", 3, [("User:b", "*", 2, 3)])],
    )
    created: list[Any] = []

    def target_handler(struct: Any) -> Any:
        if struct.API_KEY == 29:
            return DescribeAclsResponse_v1(0, 0, None, [(2, "A.t", 3, [("User:a", "*", 3, 3)])])
        created.extend(struct.creations)
        return CreateAclsResponse_v1(0, [(0, None)] * len(struct.creations))

    tgt._client.handler = target_handler
    plan = await job.sync_acls()
    # A.t READ exists already; WRITE is never synced; ALL on u becomes READ on A.u
    assert plan.create == [acl("A.u", READ, principal="User:b")]
    assert created == [(2, "A.u", 3, "User:b", "*", 3, 3)]
    assert job.acls_created == 1


async def test_job_acl_sync_target_without_authorizer_is_a_round_error() -> None:
    job, src, tgt = make_job({"t": []}, {})
    src._client.handler = lambda s: DescribeAclsResponse_v1(
        0, 0, None, [(2, "t", 3, [("User:a", "*", 3, 3)])]
    )
    tgt._client.handler = lambda s: DescribeAclsResponse_v1(0, 54, None, [])
    plan = await job.plan_acls()
    assert not plan.target_authorizer and plan.create == [acl("A.t", principal="User:a")]
    with pytest.raises(KafkaRequestFailed):
        await job.apply_acls(plan)


async def test_job_runs_both_loops_until_stopped() -> None:
    job, _, _ = make_job(
        {"t": [entry("retention.ms", "5")]},
        {"A.t": []},
        sync_topic_configs_interval_seconds=0.05,
        sync_topic_acls_interval_seconds=0.05,
    )
    rounds = {"configs": 0, "acls": 0}
    sync_configs, sync_acls = job.sync_configs, job.sync_acls

    async def count_configs() -> ConfigSyncPlan:
        rounds["configs"] += 1
        return await sync_configs()

    async def count_acls() -> AclSyncPlan:
        rounds["acls"] += 1
        if rounds["acls"] == 1:
            raise KafkaUnavailable("source down")
        return await sync_acls()

    job.sync_configs, job.sync_acls = count_configs, count_acls  # type: ignore[method-assign]
    run = asyncio.create_task(job.run())
    await asyncio.sleep(0.3)
    assert job.last_error is None  # the failed ACL round was retried and succeeded
    job.stop()
    await asyncio.wait_for(run, 5)
    assert rounds["configs"] >= 3 and rounds["acls"] >= 3


async def test_job_with_both_syncs_disabled_returns_at_once() -> None:
    job, _, _ = make_job({}, {}, sync_topic_configs_enabled=False, sync_topic_acls_enabled=False)
    await asyncio.wait_for(job.run(), 1)


# --- validate's rows -----------------------------------------------------------------------------------


def test_validate_rows() -> None:
    plan = ConfigSyncPlan(
        topics={"A.t": "t", "A.u": "u"},
        changes={"A.t": [("retention.ms", "SET", "5"), ("segment.ms", "DELETE", None)]},
        errors={"A.u": KafkaRequestFailed("boom")},
    )
    assert config_rows(plan) == [
        ("set config", "A.t", "", "retention.ms=5"),
        ("reset config", "A.t", "", "segment.ms"),
        ("error", "A.u", "", "boom"),
    ]
    assert acl_rows(AclSyncPlan(source_authorizer=False)) == [
        ("skip ACLs", "", "", "the source cluster has no authorizer")
    ]
    assert acl_rows(AclSyncPlan(create=[acl("A.t")])) == [
        ("create ACL", "A.t", "", "ALLOW User:alice from * READ on TOPIC:A.t (LITERAL)")
    ]


async def test_job_skips_topics_deleted_or_not_yet_known_without_reporting() -> None:
    job, src, _ = make_job({"t": [entry("retention.ms", "5")], "u": []}, {"A.t": [], "A.u": []})
    src.describe_errors["t"] = KafkaRequestFailed("describe configs of t: unknown topic", code=3)
    plan = await job.sync_configs()
    assert plan.changes == {} and plan.errors == {}
    assert job.last_error is None
