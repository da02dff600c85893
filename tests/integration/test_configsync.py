"""Config and ACL sync against real brokers.

- Source topic config changes reach the remote topic within ``sync.topic.configs.interval.seconds``;
  excluded properties set by hand on the target stay; a source override removed resets the target's.
- ``mirror validate`` prints exactly the config changes the next sync then makes.
- With SASL/PLAIN + StandardAuthorizer clusters (started here, module-scoped): a READ ACL on the source
  topic appears renamed on the target, a WRITE ACL does not, ALL becomes READ, and a consumer
  authenticated as that principal reads the remote topic.

The oracle is plain aiokafka (legacy AlterConfigs, DescribeConfigs, aiokafka's one-binding ACL requests);
on secured clusters it uses the harness's PLAINTEXT internal listener (a super user).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

from mirror.cli.validate import config_rows, print_plan
from mirror.jobs.configsync import ConfigSyncJob, ConfigSyncPlan
from mirror.kafka import Admin
from mirror.kafka.configs import AclBinding, AclOperation, AclPermission, PatternType, ResourceType
from mirror.local.kafka import HarnessError, LocalKafka, LocalKafkaCluster, Security
from mirror.service.worker import make_policy
from tests.conftest import FAILED_KEY, LOG_DIR

from .support import create_topic, produce, running, settings_for, wait_for

FAST_SYNC = {
    "sync.topic.configs.interval.seconds": "1",
    "sync.topic.acls.interval.seconds": "1",
    "emit.checkpoints.enabled": "false",
}
DYNAMIC_TOPIC_CONFIG = 1


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    return client


async def topic_configs(bootstrap: str, topic: str) -> dict[str, tuple[str | None, int]]:
    """name -> (value, config source) of one topic."""
    client = await _admin(bootstrap)
    try:
        (response,) = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        (resource,) = response.resources
        assert resource[0] == 0, resource
        return {e[0]: (e[1], e[3]) for e in resource[4]}
    finally:
        await client.close()


async def overrides(bootstrap: str, topic: str) -> dict[str, str | None]:
    configs = await topic_configs(bootstrap, topic)
    return {name: value for name, (value, source) in configs.items() if source == DYNAMIC_TOPIC_CONFIG}


async def set_overrides(bootstrap: str, topic: str, configs: Mapping[str, str]) -> None:
    """Replace the topic's overrides with `configs` (the legacy, non-incremental AlterConfigs)."""
    client = await _admin(bootstrap)
    try:
        (response,) = await client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, dict(configs))]
        )
        assert response.resources[0][0] == 0, response
    finally:
        await client.close()


async def topic_exists(bootstrap: str, topic: str) -> bool:
    client = await _admin(bootstrap)
    try:
        return topic in await client.list_topics()
    finally:
        await client.close()


# --- config sync -----------------------------------------------------------------------------------------


async def test_source_config_changes_reach_the_remote_topic(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str, tmp_path: Path
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote = f"A.{topic}"
    await create_topic(a, topic, 1, {"retention.ms": "3600000", "segment.ms": "3600000"})
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"], **FAST_SYNC)
    async with running(settings) as worker:
        await wait_for(lambda: topic_exists(b, remote), timeout=30)
        await wait_for(lambda: _has(b, remote, {"retention.ms": "3600000"}), timeout=15)
        # Excluded properties set by hand on the target (the default config.properties.exclude list).
        hand_set = {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
        await set_overrides(b, remote, {**await overrides(b, remote), **hand_set})

        await set_overrides(
            a, topic, {"retention.ms": "7200000", "cleanup.policy": "compact", "segment.ms": "3600000"}
        )
        t0 = time.monotonic()
        await wait_for(
            lambda: _has(b, remote, {"retention.ms": "7200000", "cleanup.policy": "compact"}), timeout=15
        )
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"config sync took {elapsed:.1f}s with a 1 s interval"
        assert (await overrides(b, remote)).items() >= hand_set.items()

        # An override removed on the source is reset (deleted) on the target; excluded ones still stay.
        # (Not retention.ms: the test brokers set log.retention.ms statically, which MM2 never copies.)
        await set_overrides(a, topic, {"retention.ms": "7200000", "cleanup.policy": "compact"})
        await wait_for(lambda: _lacks(b, remote, "segment.ms"), timeout=15)
        assert await overrides(b, remote) == {
            **hand_set,
            "retention.ms": "7200000",
            "cleanup.policy": "compact",
        }

        (runner,) = [r for r in worker.flows if r.flow.name == "A->B"]
        (job,) = [j for j in runner.singletons if isinstance(j, ConfigSyncJob)]
        # exactly the three changes made on the source (retention.ms, cleanup.policy, then segment.ms
        # removed): rounds that find nothing to change change nothing, excluded properties are never touched
        assert job.configs_synced == 3
        assert remote not in job.topic_errors


async def _has(bootstrap: str, topic: str, expected: Mapping[str, str]) -> bool:
    return (await overrides(bootstrap, topic)).items() >= expected.items()


async def _lacks(bootstrap: str, topic: str, name: str) -> bool:
    return name not in await overrides(bootstrap, topic)


async def test_validate_prints_what_the_next_config_sync_does(
    cluster_a: LocalKafkaCluster,
    cluster_b: LocalKafkaCluster,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = cluster_a.bootstrap_servers, cluster_b.bootstrap_servers
    remote, local = f"A.{topic}", f"local-{topic}"
    await create_topic(a, topic, 1, {"retention.ms": "123456", "max.message.bytes": "200000"})
    target_only = {"retention.ms": "1", "segment.ms": "7200000", "min.insync.replicas": "1"}
    await create_topic(b, remote, 1, target_only)
    await create_topic(b, local, 1, {"retention.ms": "1"})  # not from A: never touched
    settings = settings_for(tmp_path, {"A": a, "B": b}, ["A->B"])
    flow = settings.flows["A->B"]

    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    assert await print_plan(settings) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if f" {remote} " in line]
    # what an operator must read there, written out here rather than taken from the code under test
    for action, detail in [
        ("set config", "max.message.bytes=200000"),
        ("set config", "retention.ms=123456"),
        ("reset config", "segment.ms"),
    ]:
        assert sum(action in line and detail in line for line in printed) == 1, (action, detail, printed)
    assert len(printed) == 3, printed  # min.insync.replicas (excluded) and local-* are not touched

    source, target = Admin(settings.cluster("A"), "test-source"), Admin(settings.cluster("B"), "test-target")
    await source.start()
    await target.start()
    try:
        job = ConfigSyncJob(flow, source, target, make_policy(flow))
        plan = await job.plan_configs()
        assert sorted(plan.changes[remote]) == [
            ("max.message.bytes", "SET", "200000"),
            ("retention.ms", "SET", "123456"),
            ("segment.ms", "DELETE", None),  # a source default: the target's override is reset
        ]
        assert local not in plan.topics and not plan.errors.get(remote)
        rows = config_rows(ConfigSyncPlan(changes={remote: plan.changes[remote]}))
        assert len(printed) == len(rows), printed
        for action, _, _, detail in rows:
            assert any(action in line and detail in line for line in printed), (action, detail, printed)

        assert await job.apply_configs(plan) == {r: None for r in plan.changes}
        assert await overrides(b, remote) == {
            "retention.ms": "123456",
            "max.message.bytes": "200000",
            "min.insync.replicas": "1",
        }
        assert await overrides(b, local) == {"retention.ms": "1"}
        assert remote not in (await job.plan_configs()).changes  # nothing left to do
    finally:
        await source.close()
        await target.close()


# --- ACL sync on secured clusters ------------------------------------------------------------------------

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest) -> Iterator[LocalKafka]:
    """Two KRaft clusters with a SASL_PLAINTEXT/PLAIN client listener and the StandardAuthorizer;
    ``User:admin`` (mirror's principal) is a super user."""
    security = Security.sasl_plaintext(USERS, authorizer=True, super_users=["User:admin"])
    harness = LocalKafka()
    try:
        harness.add("SA", "SB", security=security)
    except HarnessError as exc:
        harness.close(keep_logs_in=LOG_DIR)
        pytest.fail(f"cannot start secured Kafka clusters: {exc}", pytrace=False)
    yield harness
    harness.close(keep_logs_in=LOG_DIR if request.session.stash.get(FAILED_KEY, False) else None)


async def create_source_acls(bootstrap: str, bindings: list[AclBinding]) -> None:
    """aiokafka's own CreateAcls wrapper, one binding per request (independent of mirror's)."""
    client = await _admin(bootstrap)
    try:
        for b in bindings:
            request = CreateAclsRequest(
                b.resource_type, b.name, b.pattern_type, b.principal, b.host, b.operation, b.permission
            )
            response = await client._send_request(request)
            assert all(code == 0 for code, _ in response.creation_responses), response
    finally:
        await client.close()


async def topic_acls(bootstrap: str, topic: str) -> set[tuple[str, str, int, int]]:
    """(principal, host, operation, permission) of the LITERAL ACLs on one topic."""
    client = await _admin(bootstrap)
    try:
        response = await client._send_request(DescribeAclsRequest(2, topic, 3, None, None, 1, 1))
        assert response.error_code == 0, response
        return {(p, h, op, perm) for _t, _n, _pt, acls in response.resources for p, h, op, perm in acls}
    finally:
        await client.close()


def acl(name: str, principal: str, op: AclOperation, permission: AclPermission = AclPermission.ALLOW) -> Any:
    return AclBinding(ResourceType.TOPIC, name, PatternType.LITERAL, principal, "*", op, permission)


def sasl_props(alias: str, cluster: LocalKafkaCluster, user: str) -> dict[str, str]:
    return {f"{alias}.{k}": v for k, v in cluster.client_properties(user).items() if k != "bootstrap.servers"}


def sasl_consumer(cluster: LocalKafkaCluster, user: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username=user,
        sasl_plain_password=USERS[user],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def topics_seen_by(cluster: LocalKafkaCluster, user: str) -> set[str]:
    """The topics `user` may describe (metadata leaves out the others)."""
    consumer = sasl_consumer(cluster, user)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


async def read_as(cluster: LocalKafkaCluster, user: str, topic: str, expected: int) -> list[bytes | None]:
    """Values of partition 0 read by a group-less consumer authenticated as `user`."""
    consumer = sasl_consumer(cluster, user)
    await consumer.start()
    values: list[bytes | None] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for recs in (await consumer.getmany(tp, timeout_ms=500)).values():
                values += [r.value for r in recs]
        return values
    finally:
        await consumer.stop()


async def test_topic_acls_are_synced_renamed_and_downgraded(
    secured: LocalKafka,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sa, sb = secured["SA"], secured["SB"]
    oracle_a, oracle_b = sa.internal_bootstrap_servers, sb.internal_bootstrap_servers
    remote = f"SA.{topic}"
    await create_topic(oracle_a, topic, 1)
    await produce(
        oracle_a, topic, {0: [(b"k%d" % i, b"v%d" % i, (), 1_700_000_000_000 + i) for i in range(5)]}
    )
    R, W, ALL = AclOperation.READ, AclOperation.WRITE, AclOperation.ALL
    await create_source_acls(
        oracle_a,
        [
            acl(topic, "User:alice", R),
            acl(topic, "User:alice", W),  # ALLOW WRITE: never synced
            acl(topic, "User:bob", ALL),  # ALL becomes READ
            acl(topic, "User:mallory", R, AclPermission.DENY),  # DENY is copied
        ],
    )
    settings = settings_for(
        tmp_path,
        {"SA": sa.bootstrap_servers, "SB": sb.bootstrap_servers},
        ["SA->SB"],
        **FAST_SYNC,
        **sasl_props("SA", sa, "admin"),
        **sasl_props("SB", sb, "admin"),
    )
    flow = settings.flows["SA->SB"]
    expected = {
        ("User:alice", "*", R, AclPermission.ALLOW),
        ("User:bob", "*", R, AclPermission.ALLOW),
        ("User:mallory", "*", R, AclPermission.DENY),
    }

    # What `mirror validate` prints as "create ACL" rows ...
    monkeypatch.setenv("COLUMNS", "400")
    assert await print_plan(settings) == 0
    printed = [
        line for line in capsys.readouterr().out.splitlines() if "create ACL" in line and remote in line
    ]
    source, target = (
        Admin(settings.cluster("SA"), "test-source"),
        Admin(settings.cluster("SB"), "test-target"),
    )
    await source.start()
    await target.start()
    try:
        job = ConfigSyncJob(flow, source, target, make_policy(flow))
        planned = [b for b in (await job.plan_acls()).create if b.name == remote]
        assert {(b.principal, b.host, b.operation, b.permission) for b in planned} == expected
        assert all(any(str(b) in line for b in planned) for line in printed), printed
        assert len(printed) == len(planned) == 3

        # ... is what the running service then creates.
        async with running(settings):
            await wait_for(lambda: _acls_at_least(oracle_b, remote, expected), timeout=30)
            assert await topic_acls(oracle_b, remote) == expected  # no WRITE, no ALL
            values = await read_as(sb, "alice", remote, 5)
            assert values == [b"v%d" % i for i in range(5)]
            # (without an ACL alice could not: the authorizer denies when no ACL is found)
            visible = await topics_seen_by(sb, "alice")
            assert remote in visible and "heartbeats" not in visible
        assert not [b for b in (await job.plan_acls()).create if b.name == remote]
    finally:
        await source.close()
        await target.close()


async def _acls_at_least(bootstrap: str, topic: str, expected: set[tuple[str, str, int, int]]) -> bool:
    return await topic_acls(bootstrap, topic) >= expected


async def test_acl_sync_from_a_source_without_authorizer_is_skipped(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, {"A": cluster_a.bootstrap_servers, "B": cluster_b.bootstrap_servers}, ["A->B"]
    )
    flow = settings.flows["A->B"]
    source, target = Admin(settings.cluster("A"), "test-source"), Admin(settings.cluster("B"), "test-target")
    await source.start()
    await target.start()
    try:
        job = ConfigSyncJob(flow, source, target, make_policy(flow))
        plan = await asyncio.wait_for(job.sync_acls(), 30)
        assert not plan.source_authorizer and not plan.create
        assert job.last_error is None
    finally:
        await source.close()
        await target.close()
