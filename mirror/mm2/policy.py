"""Replication policies: remote topic naming, internal topics and cycle detection (docs/mm2-compat.md §2).

Pure logic with the semantics of Java MirrorMaker 2 (Kafka 4.4): `DefaultReplicationPolicy` prefixes the
source alias (`orders` on A becomes `A.orders`), `IdentityReplicationPolicy` keeps names. The module-level
functions carry the connector-side rules that Java keeps in `MirrorSourceConnector` and
`MirrorCheckpointTask` (`isCycle`, `shouldReplicateTopic`, the checkpoint topic rename).
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "DEFAULT_POLICY_CLASS",
    "DEFAULT_SEPARATOR",
    "IDENTITY_POLICY_CLASS",
    "DefaultReplicationPolicy",
    "IdentityReplicationPolicy",
    "ReplicationPolicy",
    "TopicMatcher",
    "checkpoint_topic_name",
    "is_cycle",
    "java_split",
    "policy_from_config",
    "should_replicate_topic",
]

DEFAULT_SEPARATOR = "."
DEFAULT_POLICY_CLASS = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
IDENTITY_POLICY_CLASS = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
HEARTBEATS_TOPIC = "heartbeats"


def java_split(text: str, separator: str) -> list[str]:
    """Split like Java's `Pattern.compile(Pattern.quote(separator)).split(text)` (limit 0).

    Unlike `str.split`, trailing empty strings are removed (so `"a."` gives `["a"]` and `"."` gives `[]`),
    while a leading empty string is kept (`".x"` gives `["", "x"]`). An empty separator matches between
    every character, and Java drops the leading empty string of such a zero-width match.
    """
    parts = list(text) if separator == "" else text.split(separator)
    if separator == "" and not parts:
        parts = [""]  # no match at all: Java returns the input itself
    # `str.split` never returns [], and with no match it returns [text], like Java; only trim trailing "".
    if len(parts) == 1:
        return parts
    end = len(parts)
    while end > 0 and parts[end - 1] == "":
        end -= 1
    return parts[:end]


class ReplicationPolicy:
    """Base policy with the semantics of Java's `DefaultReplicationPolicy` (and the interface defaults).

    `separator` joins the source alias and the topic. When `internal_topic_separator_enabled` is false,
    the internal topic names (checkpoints, offset-syncs) use `.` whatever the separator (KIP-949); Java only
    consults that flag when a separator is configured, so pass `True` when none was.
    """

    __slots__ = ("_checkpoints_suffix", "_internal_separator", "_internal_suffix", "separator")

    def __init__(
        self, separator: str = DEFAULT_SEPARATOR, internal_topic_separator_enabled: bool = True
    ) -> None:
        self.separator = separator
        self._internal_separator = separator if internal_topic_separator_enabled else "."
        self._internal_suffix = self._internal_separator + "internal"
        self._checkpoints_suffix = self._internal_separator + "checkpoints" + self._internal_suffix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(separator={self.separator!r})"

    # -- naming -------------------------------------------------------------------------------------------

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        """Name of `topic` from `source_alias` on the target: `A.orders` (prefixed even if already remote)."""
        return source_alias + self.separator + topic

    def topic_source(self, topic: str) -> str | None:
        """The source alias of a remote topic (`A` for `A.orders`), or None when `topic` is not remote."""
        parts = java_split(topic, self.separator)
        if len(parts) < 2:
            return None
        return parts[0]

    def upstream_topic(self, topic: str) -> str | None:
        """The topic one hop upstream (`orders` for `A.orders`, `A.orders` for `B.A.orders`), or None."""
        source = self.topic_source(topic)
        if source is None:
            return None
        return topic[len(source) + len(self.separator) :]

    def original_topic(self, topic: str) -> str:
        """The topic at the start of the replication chain; `topic` itself when it is not remote."""
        while True:
            upstream = self.upstream_topic(topic)
            if upstream is None or upstream == topic:
                return topic
            topic = upstream

    # -- internal topics ----------------------------------------------------------------------------------

    def heartbeats_topic(self) -> str:
        """Name of the heartbeats topic; the separator never affects it."""
        return HEARTBEATS_TOPIC

    def offset_syncs_topic(self, cluster_alias: str) -> str:
        """`mm2-offset-syncs{S}<alias>{S}internal`, named after the *other* cluster of the flow (§2)."""
        return "mm2-offset-syncs" + self._internal_separator + cluster_alias + self._internal_suffix

    def checkpoints_topic(self, cluster_alias: str) -> str:
        """`<source alias>{S}checkpoints{S}internal`."""
        return cluster_alias + self._checkpoints_suffix

    def is_heartbeats_topic(self, topic: str) -> bool:
        """True for `heartbeats`, `A.heartbeats`, `B.A.heartbeats` (the original topic is `heartbeats`)."""
        return self.heartbeats_topic() == self.original_topic(topic)

    def is_checkpoints_topic(self, topic: str) -> bool:
        """True when `topic` ends with `{S}checkpoints{S}internal`."""
        return topic.endswith(self._checkpoints_suffix)

    def is_mm2_internal_topic(self, topic: str) -> bool:
        """4.0+ rule: starts with `mm2` and ends with `{S}internal`, or is a checkpoints topic."""
        return (
            topic.startswith("mm2") and topic.endswith(self._internal_suffix)
        ) or self.is_checkpoints_topic(topic)

    def is_internal_topic(self, topic: str) -> bool:
        """4.0+ rule (KAFKA-17200): an MM2 internal topic, or a name starting with `__` or `.`."""
        return self.is_mm2_internal_topic(topic) or topic.startswith("__") or topic.startswith(".")


class DefaultReplicationPolicy(ReplicationPolicy):
    """`org.apache.kafka.connect.mirror.DefaultReplicationPolicy`."""

    __slots__ = ()


class IdentityReplicationPolicy(DefaultReplicationPolicy):
    """`org.apache.kafka.connect.mirror.IdentityReplicationPolicy`: remote topics keep their names.

    Topics that merely end with `heartbeats` (even `myheartbeats`) follow the Default rules, so heartbeats
    still show the topology. Every other topic's source is the configured `source_alias` (None if unset),
    and its upstream topic is itself, so this policy cannot detect replication loops.
    """

    __slots__ = ("source_alias",)

    def __init__(
        self,
        source_alias: str | None = None,
        separator: str = DEFAULT_SEPARATOR,
        internal_topic_separator_enabled: bool = True,
    ) -> None:
        super().__init__(separator, internal_topic_separator_enabled)
        self.source_alias = source_alias

    def __repr__(self) -> str:
        return f"IdentityReplicationPolicy(source_alias={self.source_alias!r}, separator={self.separator!r})"

    def _looks_like_heartbeat(self, topic: str) -> bool:
        return topic.endswith(self.heartbeats_topic())

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        if self._looks_like_heartbeat(topic):
            return super().format_remote_topic(source_alias, topic)
        return topic

    def topic_source(self, topic: str) -> str | None:
        if self._looks_like_heartbeat(topic):
            return super().topic_source(topic)
        return self.source_alias

    def upstream_topic(self, topic: str) -> str | None:
        if self._looks_like_heartbeat(topic):
            return super().upstream_topic(topic)
        return topic


def policy_from_config(
    class_name: str,
    separator: str = DEFAULT_SEPARATOR,
    internal_topic_separator_enabled: bool = True,
    source_alias: str | None = None,
) -> ReplicationPolicy:
    """Build the policy named by `replication.policy.class` (a Java FQCN; the simple name is accepted too)."""
    name = class_name.strip()
    if name in (DEFAULT_POLICY_CLASS, "DefaultReplicationPolicy"):
        return DefaultReplicationPolicy(separator, internal_topic_separator_enabled)
    if name in (IDENTITY_POLICY_CLASS, "IdentityReplicationPolicy"):
        return IdentityReplicationPolicy(source_alias, separator, internal_topic_separator_enabled)
    raise ValueError(
        f"unsupported replication.policy.class {class_name!r}: expected {DEFAULT_POLICY_CLASS} "
        f"or {IDENTITY_POLICY_CLASS}"
    )


class TopicMatcher(Protocol):
    """What `should_replicate_topic` needs from a topic filter (`mirror.mm2.filters.TopicFilter` fits)."""

    def matches(self, topic: str) -> bool: ...


def is_cycle(policy: ReplicationPolicy, topic: str, source_alias: str, target_alias: str) -> bool:
    """Java 4.4 `MirrorSourceConnector.isCycle` (KAFKA-9914): did `topic` come from the flow's own clusters?

    Walks the chain of sources: any hop whose source is the target alias is a cycle and, for every policy
    that is not an `IdentityReplicationPolicy`, so is a hop whose source is the flow's source alias.
    """
    identity = isinstance(policy, IdentityReplicationPolicy)
    while True:
        source = policy.topic_source(topic)
        if source is None:
            return False
        if source == target_alias or (not identity and source == source_alias):
            return True
        upstream = policy.upstream_topic(topic)
        if upstream is None or upstream == topic:
            return False
        topic = upstream


def should_replicate_topic(  # noqa: PLR0917 (the shape of the call sites; the flag is usually by keyword)
    policy: ReplicationPolicy,
    topic_filter: TopicMatcher,
    topic: str,
    source_alias: str,
    target_alias: str,
    heartbeats_replication_enabled: bool = True,
) -> bool:
    """Java `MirrorSourceConnector.shouldReplicateTopic` (§2.1).

    (filter matches, or heartbeats replication is enabled and it is a heartbeats topic) and not internal
    and not a cycle.
    """
    return (
        (
            topic_filter.matches(topic)
            or (heartbeats_replication_enabled and policy.is_heartbeats_topic(topic))
        )
        and not policy.is_internal_topic(topic)
        and not is_cycle(policy, topic, source_alias, target_alias)
    )


def checkpoint_topic_name(
    policy: ReplicationPolicy, source_alias: str, target_alias: str, upstream_topic: str
) -> str:
    """The downstream topic named in a checkpoint for a group's offset on `upstream_topic` (§5.6).

    A topic that came from the target cluster maps back to its original name (fail-back); any other topic
    gets the remote name `formatRemoteTopic(source_alias, topic)`.
    """
    if policy.topic_source(upstream_topic) == target_alias:
        return policy.original_topic(upstream_topic)
    return policy.format_remote_topic(source_alias, upstream_topic)
