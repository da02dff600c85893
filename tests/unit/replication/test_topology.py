"""Every internal topic name of a flow comes from `mirror.replication.topology` (docs/mm2-compat.md)."""

from __future__ import annotations

from pathlib import Path

from mirror.config import FlowSettings, load_settings
from mirror.mm2.policy import IdentityReplicationPolicy
from mirror.replication.topology import (
    checkpoints_topic,
    heartbeats_topic,
    make_policy,
    offset_syncs_location,
    progress_topic,
    tasks_topic,
)

BASE = "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"


def _flow(tmp_path: Path, extra: str = "") -> FlowSettings:
    config = tmp_path / "mm2.properties"
    config.write_text(BASE + extra)
    return load_settings(config, env={}).settings.flows["A->B"]


def test_default_names(tmp_path: Path) -> None:
    flow = _flow(tmp_path)
    assert heartbeats_topic(flow) == "heartbeats"
    assert checkpoints_topic(flow) == "A.checkpoints.internal"
    assert offset_syncs_location(flow) == ("A", "mm2-offset-syncs.B.internal")
    assert progress_topic(flow) == "mm2-offsets.A.internal"
    assert tasks_topic(flow) == "mm2-tasks.A.internal"


def test_names_follow_the_flows_settings(tmp_path: Path) -> None:
    flow = _flow(
        tmp_path,
        "A->B.replication.policy.separator = -\n"
        "A->B.offset-syncs.topic.location = target\n"
        "A->B.offset.storage.topic = my-progress\n",
    )
    policy = make_policy(flow)
    assert checkpoints_topic(flow, policy) == checkpoints_topic(flow) == "A-checkpoints-internal"
    assert offset_syncs_location(flow, policy) == ("B", "mm2-offset-syncs-A-internal")
    assert heartbeats_topic(flow, policy) == "heartbeats"  # the separator never changes it
    assert progress_topic(flow) == "my-progress"
    assert tasks_topic(flow) == "mm2-tasks.A.internal"


def test_the_policy_factory_reads_the_flow(tmp_path: Path) -> None:
    flow = _flow(
        tmp_path,
        "A->B.replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy\n",
    )
    policy = make_policy(flow)
    assert isinstance(policy, IdentityReplicationPolicy) and policy.source_alias == "A"
    assert policy.format_remote_topic("A", "orders") == "orders"
