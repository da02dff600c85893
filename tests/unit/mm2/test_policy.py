"""Replication policies, internal topics, cycles and renames of mirror.mm2.policy (docs/mm2-compat.md §2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mirror.mm2.filters import TopicFilter
from mirror.mm2.policy import (
    DEFAULT_POLICY_CLASS,
    IDENTITY_POLICY_CLASS,
    DefaultReplicationPolicy,
    IdentityReplicationPolicy,
    ReplicationPolicy,
    checkpoint_topic_name,
    is_cycle,
    java_split,
    policy_from_config,
    should_replicate_topic,
)

DEFAULT = DefaultReplicationPolicy()
ALIAS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8
)
TOPIC = st.text(alphabet="abcxyz019._-", max_size=20)
SEPARATOR = st.sampled_from([".", "-", "_", "__", "..", "._"])


def java_split_reference(text: str, separator: str) -> list[str]:
    """A line-by-line port of java.util.regex.Pattern.split(input, 0) on a quoted pattern."""
    index = 0
    matches: list[str] = []
    for m in re.finditer(re.escape(separator), text):
        if index == 0 and m.start() == 0 and m.start() == m.end():
            continue  # no empty leading substring for a zero-width match at the beginning
        matches.append(text[index : m.start()])
        index = m.end()
    if index == 0:
        return [text]
    matches.append(text[index:])
    while matches and matches[-1] == "":
        matches.pop()
    return matches


# --- Java Pattern.split ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "separator", "expected"),
    [
        ("a.b", ".", ["a", "b"]),
        ("a.", ".", ["a"]),
        ("a..", ".", ["a"]),
        ("a..b", ".", ["a", "", "b"]),
        (".x", ".", ["", "x"]),
        (".", ".", []),
        ("..", ".", []),
        ("", ".", [""]),
        ("x", ".", ["x"]),
        ("a__b__", "__", ["a", "b"]),
        ("a___b", "__", ["a", "_b"]),
        ("abc", "", ["a", "b", "c"]),
        ("", "", [""]),
    ],
)
def test_java_split(text: str, separator: str, expected: list[str]) -> None:
    """Trailing empty strings are removed and a leading one is kept, unlike str.split."""
    assert java_split(text, separator) == expected
    assert java_split_reference(text, separator) == expected


@given(st.text(alphabet="ab._-", max_size=12), st.sampled_from([".", "-", "_", "__", "._", "a", ""]))
def test_java_split_matches_reference_port(text: str, separator: str) -> None:
    """java_split agrees with a port of Java's algorithm on every input."""
    assert java_split(text, separator) == java_split_reference(text, separator)


# --- DefaultReplicationPolicy ---------------------------------------------------------------------------


def test_format_remote_topic_prefixes_every_hop() -> None:
    """A remote topic is prefixed again on the next hop: orders, A.orders, B.A.orders."""
    assert DEFAULT.format_remote_topic("A", "orders") == "A.orders"
    assert DEFAULT.format_remote_topic("B", "A.orders") == "B.A.orders"
    assert DefaultReplicationPolicy("-").format_remote_topic("A", "orders") == "A-orders"


@pytest.mark.parametrize(
    ("topic", "source", "upstream"),
    [
        ("A.orders", "A", "orders"),
        ("B.A.orders", "B", "A.orders"),
        ("a.", None, None),
        ("a..b", "a", ".b"),
        (".x", "", "x"),
        ("..x", "", ".x"),
        ("x", None, None),
        ("", None, None),
        (".", None, None),
        ("a.b.", "a", "b."),
        ("heartbeats", None, None),
    ],
)
def test_topic_source_and_upstream_topic(topic: str, source: str | None, upstream: str | None) -> None:
    """topicSource uses Java split semantics; upstreamTopic strips `source + separator`."""
    assert DEFAULT.topic_source(topic) == source
    assert DEFAULT.upstream_topic(topic) == upstream


@pytest.mark.parametrize(
    ("topic", "original"),
    [("orders", "orders"), ("A.orders", "orders"), ("C.B.A.orders", "orders"), ("a..b", "b"), ("a.", "a.")],
)
def test_original_topic_follows_every_hop(topic: str, original: str) -> None:
    """originalTopic walks upstream until the topic is no longer remote."""
    assert DEFAULT.original_topic(topic) == original


def test_custom_separator() -> None:
    """A custom separator is split literally (it is not a regex)."""
    policy = DefaultReplicationPolicy("__")
    assert policy.topic_source("A__orders") == "A"
    assert policy.upstream_topic("B__A__orders") == "A__orders"
    assert policy.original_topic("B__A__orders") == "orders"
    assert policy.topic_source("A.orders") is None
    dash = DefaultReplicationPolicy("|")
    assert dash.topic_source("A|x") == "A"


def test_internal_topic_names() -> None:
    """checkpoints and offset-syncs names use the separator unless the internal separator is disabled."""
    assert DEFAULT.heartbeats_topic() == "heartbeats"
    assert DEFAULT.checkpoints_topic("A") == "A.checkpoints.internal"
    assert DEFAULT.offset_syncs_topic("B") == "mm2-offset-syncs.B.internal"
    custom = DefaultReplicationPolicy("-")
    assert custom.heartbeats_topic() == "heartbeats"
    assert custom.checkpoints_topic("A") == "A-checkpoints-internal"
    assert custom.offset_syncs_topic("B") == "mm2-offset-syncs-B-internal"
    legacy = DefaultReplicationPolicy("-", internal_topic_separator_enabled=False)
    assert legacy.checkpoints_topic("A") == "A.checkpoints.internal"
    assert legacy.offset_syncs_topic("B") == "mm2-offset-syncs.B.internal"
    assert legacy.format_remote_topic("A", "t") == "A-t"


@pytest.mark.parametrize(
    ("topic", "internal"),
    [
        ("__consumer_offsets", True),
        ("__transaction_state", True),
        (".hidden", True),
        ("mm2-offsets.A.internal", True),
        ("mm2-status.A.internal", True),
        ("mm2-configs.A.internal", True),
        ("mm2-offset-syncs.B.internal", True),
        ("A.checkpoints.internal", True),
        ("B.A.checkpoints.internal", True),
        ("mm2.internal", True),
        # 4.0+ (KAFKA-17200): other *.internal and *-internal topics are ordinary topics
        ("foo.internal", False),
        ("foo-internal", False),
        ("A.foo.internal", False),
        ("heartbeats", False),
        ("A.heartbeats", False),
        ("orders", False),
        ("_single", False),
        ("mm2", False),
    ],
)
def test_is_internal_topic_4x_rules(topic: str, internal: bool) -> None:
    """Internal: MM2 internal topics (mm2*.internal, checkpoints), `__*` and `.*`, nothing else."""
    assert DEFAULT.is_internal_topic(topic) is internal


def test_mm2_internal_and_checkpoints_topics() -> None:
    """isMM2InternalTopic is mm2*{S}internal or a checkpoints topic; isCheckpointsTopic is the suffix."""
    assert DEFAULT.is_mm2_internal_topic("mm2-offsets.A.internal")
    assert DEFAULT.is_mm2_internal_topic("A.checkpoints.internal")
    assert not DEFAULT.is_mm2_internal_topic("__consumer_offsets")
    assert not DEFAULT.is_mm2_internal_topic("x.internal")
    assert DEFAULT.is_checkpoints_topic("A.checkpoints.internal")
    assert not DEFAULT.is_checkpoints_topic("A.checkpoints")


def test_custom_separator_internal_topic_quirks() -> None:
    """With separator `-`, Connect's `mm2-offsets.A.internal` is not internal to the policy (§2.1)."""
    policy = DefaultReplicationPolicy("-")
    assert not policy.is_internal_topic("mm2-offsets.A.internal")
    assert not policy.is_mm2_internal_topic("mm2-status.A.internal")
    assert policy.is_internal_topic("mm2-offset-syncs-B-internal")
    assert policy.is_checkpoints_topic("A-checkpoints-internal")
    assert not policy.is_checkpoints_topic("A.checkpoints.internal")
    # Only the default topics.exclude keeps Connect's topics out of replication.
    assert not should_replicate_topic(policy, TopicFilter(), "mm2-offsets.A.internal", "A", "B")
    assert should_replicate_topic(policy, TopicFilter([".*"], []), "mm2-offsets.A.internal", "A", "B")
    # With the internal separator disabled, the `.` names are internal again.
    legacy = DefaultReplicationPolicy("-", internal_topic_separator_enabled=False)
    assert legacy.is_internal_topic("mm2-offsets.A.internal")
    assert legacy.is_checkpoints_topic("A.checkpoints.internal")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("heartbeats", True),
        ("A.heartbeats", True),
        ("B.A.heartbeats", True),
        ("heartbeats.x", False),
        ("myheartbeats", False),
        ("A.myheartbeats", False),
        ("a.", False),
    ],
)
def test_is_heartbeats_topic(topic: str, expected: bool) -> None:
    """A heartbeats topic is one whose original topic is `heartbeats`."""
    assert DEFAULT.is_heartbeats_topic(topic) is expected


@given(ALIAS, TOPIC, SEPARATOR)
def test_format_and_parse_are_inverse(alias: str, topic: str, separator: str) -> None:
    """topicSource and upstreamTopic undo formatRemoteTopic unless the topic is only separators."""
    policy = DefaultReplicationPolicy(separator)
    assume(topic != "" and java_split(topic, separator) != [])
    remote = policy.format_remote_topic(alias, topic)
    assert policy.topic_source(remote) == alias
    assert policy.upstream_topic(remote) == topic
    assert policy.original_topic(remote) == policy.original_topic(topic)


@given(st.lists(ALIAS, min_size=1, max_size=5), st.text(alphabet="abcxyz019_-", min_size=1, max_size=10))
def test_original_topic_through_many_hops(aliases: list[str], topic: str) -> None:
    """originalTopic finds the origin through any number of hops."""
    remote = topic
    for alias in aliases:
        remote = DEFAULT.format_remote_topic(alias, remote)
    assert DEFAULT.original_topic(remote) == topic
    assert DEFAULT.topic_source(remote) == aliases[-1]


# --- IdentityReplicationPolicy --------------------------------------------------------------------------


def test_identity_keeps_names_except_heartbeats() -> None:
    """Identity keeps topic names; anything ending in `heartbeats` gets the Default prefix."""
    policy = IdentityReplicationPolicy("A")
    assert policy.format_remote_topic("A", "orders") == "orders"
    assert policy.format_remote_topic("A", "heartbeats") == "A.heartbeats"
    assert policy.format_remote_topic("A", "myheartbeats") == "A.myheartbeats"
    assert policy.format_remote_topic("A", "B.heartbeats") == "A.B.heartbeats"


def test_identity_topic_source_and_upstream() -> None:
    """Identity: the configured alias is every topic's source and a topic is its own upstream topic."""
    policy = IdentityReplicationPolicy("A")
    assert policy.topic_source("orders") == "A"
    assert policy.topic_source("B.orders") == "A"
    assert policy.upstream_topic("orders") == "orders"
    assert policy.original_topic("B.orders") == "B.orders"
    assert policy.topic_source("B.heartbeats") == "B"
    assert policy.upstream_topic("B.heartbeats") == "heartbeats"
    assert policy.topic_source("heartbeats") is None
    assert policy.is_heartbeats_topic("C.B.heartbeats")
    assert IdentityReplicationPolicy(None).topic_source("orders") is None


def test_identity_internal_topics_follow_default_rules() -> None:
    """Identity inherits the internal topic rules and names of Default."""
    policy = IdentityReplicationPolicy("A", "-")
    assert policy.checkpoints_topic("A") == "A-checkpoints-internal"
    assert policy.is_internal_topic("__consumer_offsets")
    assert not policy.is_internal_topic("orders")


def test_policy_from_config() -> None:
    """The Java class names select the policy, with the separator settings and alias."""
    default = policy_from_config(DEFAULT_POLICY_CLASS, "-", False, "A")
    assert type(default) is DefaultReplicationPolicy
    assert default.format_remote_topic("A", "t") == "A-t"
    assert default.checkpoints_topic("A") == "A.checkpoints.internal"
    identity = policy_from_config(IDENTITY_POLICY_CLASS, ".", True, "A")
    assert isinstance(identity, IdentityReplicationPolicy)
    assert identity.topic_source("t") == "A"
    assert isinstance(
        policy_from_config("org.apache.kafka.connect.mirror.DefaultReplicationPolicy", ".", True, None),
        ReplicationPolicy,
    )
    assert isinstance(
        policy_from_config(" DefaultReplicationPolicy ", ".", True, None), DefaultReplicationPolicy
    )


def test_policy_from_config_rejects_unknown_classes() -> None:
    """Custom Java policies cannot run here: a clear ValueError names the class."""
    with pytest.raises(ValueError, match=r"com\.example\.MyPolicy"):
        policy_from_config("com.example.MyPolicy", ".", True, None)


def test_policy_repr() -> None:
    """The repr names the policy and its separator."""
    assert repr(DefaultReplicationPolicy("-")) == "DefaultReplicationPolicy(separator='-')"
    assert "source_alias='A'" in repr(IdentityReplicationPolicy("A"))


# --- cycles (4.4, KAFKA-9914) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "cycle"),
    [
        ("x", False),
        ("C.x", False),
        ("C.D.x", False),
        ("B.x", True),  # came from the target
        ("C.B.x", True),  # came from the target, two hops up
        ("A.x", True),  # 4.4: came from the flow's own source
        ("C.A.x", True),
        ("B.heartbeats", True),
        ("a.", False),
    ],
)
def test_is_cycle_default(topic: str, cycle: bool) -> None:
    """For flow A->B, any hop whose source is B (or, since 4.4, A) is a cycle."""
    assert is_cycle(DEFAULT, topic, "A", "B") is cycle


def test_heartbeats_do_not_loop() -> None:
    """`A.heartbeats` on B is not sent back to A by flow B->A."""
    assert is_cycle(DEFAULT, "A.heartbeats", "B", "A")
    assert not should_replicate_topic(DEFAULT, TopicFilter(), "A.heartbeats", "B", "A")
    assert should_replicate_topic(DEFAULT, TopicFilter(), "C.heartbeats", "B", "A")


def test_is_cycle_identity_checks_only_the_target() -> None:
    """Identity (by isinstance) only treats the target alias as a cycle, never the source."""
    policy = IdentityReplicationPolicy("A")
    assert not is_cycle(policy, "orders", "A", "B")
    assert not is_cycle(policy, "A.heartbeats", "A", "B")
    assert is_cycle(policy, "B.heartbeats", "A", "B")
    assert is_cycle(IdentityReplicationPolicy("B"), "orders", "A", "B")

    class MyIdentity(IdentityReplicationPolicy):
        __slots__ = ()

    assert not is_cycle(MyIdentity("A"), "A.heartbeats", "A", "B")


def test_is_cycle_with_custom_separator() -> None:
    """Cycle detection uses the policy's separator."""
    policy = DefaultReplicationPolicy("_")
    assert is_cycle(policy, "B_x", "A", "B")
    assert not is_cycle(policy, "B.x", "A", "B")


# --- shouldReplicateTopic -------------------------------------------------------------------------------


def test_heartbeats_pass_the_topic_filter() -> None:
    """Heartbeats topics are replicated even when `topics` does not match them."""
    only_orders = TopicFilter(["orders"], [])
    assert should_replicate_topic(DEFAULT, only_orders, "orders", "A", "B")
    assert not should_replicate_topic(DEFAULT, only_orders, "payments", "A", "B")
    assert should_replicate_topic(DEFAULT, only_orders, "heartbeats", "A", "B")
    assert should_replicate_topic(DEFAULT, only_orders, "C.heartbeats", "A", "B")


def test_heartbeats_replication_can_be_disabled() -> None:
    """With heartbeats.replication.enabled=false (4.0+) heartbeats need the filter like any topic."""
    only_orders = TopicFilter(["orders"], [])
    assert not should_replicate_topic(
        DEFAULT, only_orders, "heartbeats", "A", "B", heartbeats_replication_enabled=False
    )
    everything = TopicFilter([".*"], [])
    assert should_replicate_topic(
        DEFAULT, everything, "heartbeats", "A", "B", heartbeats_replication_enabled=False
    )


def test_internal_topics_and_cycles_are_never_replicated() -> None:
    """Even a filter matching everything does not let internal topics or cycles through."""
    everything = TopicFilter([".*"], [])
    for topic in ["__consumer_offsets", ".x", "mm2-offsets.A.internal", "A.checkpoints.internal", "B.orders"]:
        assert not should_replicate_topic(DEFAULT, everything, topic, "A", "B"), topic
    assert should_replicate_topic(DEFAULT, everything, "foo.internal", "A", "B")


def test_default_filter_excludes() -> None:
    """The 4.0+ default topics.exclude keeps `*.replica` and mm2 topics out."""
    assert not should_replicate_topic(DEFAULT, TopicFilter(), "x.replica", "A", "B")
    assert should_replicate_topic(DEFAULT, TopicFilter(), "orders", "A", "B")


# --- checkpoint topic rename (§5.6) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "renamed"),
    [
        ("orders", "A.orders"),
        ("C.orders", "A.C.orders"),
        ("B.orders", "orders"),  # fail-back: the topic came from the target
        ("B.C.orders", "orders"),  # originalTopic strips every hop
        ("a.", "A.a."),
    ],
)
def test_checkpoint_topic_name(upstream: str, renamed: str) -> None:
    """Checkpoints name the downstream topic; topics from the target map back to their original name."""
    assert checkpoint_topic_name(DEFAULT, "A", "B", upstream) == renamed


def test_checkpoint_topic_name_identity() -> None:
    """With Identity the checkpointed topic keeps its name."""
    policy = IdentityReplicationPolicy("A")
    assert checkpoint_topic_name(policy, "A", "B", "orders") == "orders"
    assert checkpoint_topic_name(IdentityReplicationPolicy("B"), "A", "B", "orders") == "orders"
