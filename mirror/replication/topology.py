"""The names a flow gives its internal topics, and the one replication policy factory.

Per flow (``A->B``: source A, target B), as Java MirrorMaker 2 names them (docs/mm2-compat.md):

- ``heartbeats`` on the target (`heartbeats_topic`), replicated downstream like any topic;
- ``<source>.checkpoints.internal`` on the target (`checkpoints_topic`);
- ``mm2-offset-syncs.<other cluster>.internal`` on the source or the target (`offset_syncs_location`);
- ``mm2-offsets.<source>.internal`` on the target, the progress Connect's runtime keeps (`progress_topic`);
- ``mm2-tasks.<source>.internal`` on the target, the coordination group's topic (`tasks_topic`);
- ``mm2-control.<source>.internal`` on the target, the operators' pause and reset records (`control_topic`).
- ``mm2-dead-letter.<source>.internal`` on the target, the records it refused, with
  ``rejected.records.policy = dead-letter`` (`dead_letter_topic`).
"""

from __future__ import annotations

from mirror.config import FlowSettings
from mirror.mm2.policy import ReplicationPolicy, policy_from_config

__all__ = [
    "DEAD_LETTER_TOPIC_CONFIGS",
    "checkpoints_topic",
    "control_topic",
    "dead_letter_topic",
    "heartbeats_topic",
    "make_policy",
    "offset_syncs_location",
    "progress_topic",
    "tasks_topic",
]


def make_policy(flow: FlowSettings) -> ReplicationPolicy:
    """The flow's ``replication.policy.class`` with its separator settings."""
    return policy_from_config(
        flow.replication_policy_class,
        flow.replication_policy_separator,
        flow.replication_policy_internal_topic_separator_enabled,
        flow.source,
    )


def heartbeats_topic(flow: FlowSettings, policy: ReplicationPolicy | None = None) -> str:
    """The topic heartbeats go to, on the flow's target."""
    return (policy or make_policy(flow)).heartbeats_topic()


def checkpoints_topic(flow: FlowSettings, policy: ReplicationPolicy | None = None) -> str:
    """The topic checkpoints go to, on the flow's target, named after the source."""
    return (policy or make_policy(flow)).checkpoints_topic(flow.source)


def offset_syncs_location(flow: FlowSettings, policy: ReplicationPolicy | None = None) -> tuple[str, str]:
    """(cluster alias, topic) of the flow's offset-syncs topic, named after the *other* cluster."""
    policy = policy or make_policy(flow)
    if flow.offset_syncs_topic_location == "source":
        return flow.source, policy.offset_syncs_topic(flow.target)
    return flow.target, policy.offset_syncs_topic(flow.source)


def progress_topic(flow: FlowSettings) -> str:
    """Where the flow's tasks store their progress on the target (``offset.storage.topic``)."""
    return flow.offset_storage_topic or f"mm2-offsets.{flow.source}.internal"


def tasks_topic(flow: FlowSettings) -> str:
    """The flow's tasks topic on the target (one partition per task). Named like MM2's internal topics,
    so every replication policy and the default filters skip it."""
    return f"mm2-tasks.{flow.source}.internal"


def control_topic(flow: FlowSettings) -> str:
    """The flow's control topic on the target (pauses, progress resets: `mirror.replication.controls`).
    Named like MM2's internal topics, so every replication policy and the default filters skip it."""
    return f"mm2-control.{flow.source}.internal"


#: The dead-letter topic takes records up to 64 MiB (a record is there because the remote topic refused
#: it, often for its size), kept as long as the broker keeps topics by default.
DEAD_LETTER_TOPIC_CONFIGS = {"cleanup.policy": "delete", "max.message.bytes": str(64 * 1024 * 1024)}


def dead_letter_topic(flow: FlowSettings) -> str:
    """The flow's dead-letter topic on the target: the records the target refused, with
    ``rejected.records.policy = dead-letter``. Named like MM2's internal topics, so it is never replicated."""
    return f"mm2-dead-letter.{flow.source}.internal"
