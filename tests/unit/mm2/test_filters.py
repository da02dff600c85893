"""Topic, group and config-property filters of mirror.mm2.filters (docs/mm2-compat.md §3, §4).

Expected regex results were checked against java.util.regex (JDK 17) through Java MM2's own classes.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.mm2.filters import GroupFilter, TopicFilter, pattern_list
from mirror.mm2.java_regex import java_regex
from mirror.mm2.topic_configs import (
    DEFAULT_CONFIG_PROPERTIES_EXCLUDE,
    ConfigEntryTuple,
    ConfigPropertyFilter,
    ConfigSource,
    config_sync_ops,
    filter_topic_configs,
)

# --- TopicFilter / GroupFilter --------------------------------------------------------------------------


def test_topic_filter_defaults_4x() -> None:
    """Defaults are topics=.* and topics.exclude=`mm2.*\\.internal, .*\\.replica, __.*` (4.0+)."""
    f = TopicFilter()
    assert f.matches("orders")
    assert f.matches("A.orders")
    assert f.matches("foo.internal")  # ≤3.9 excluded `.*[\-\.]internal`; 4.0+ does not
    assert f.matches("foo-internal")
    assert not f.matches("mm2-offsets.A.internal")
    assert not f.matches("mm2-offset-syncs.B.internal")
    assert not f.matches("x.replica")
    assert not f.matches("__consumer_offsets")


def test_entries_are_joined_and_fully_matched() -> None:
    """Entries are joined with `|` and must match the whole name."""
    f = TopicFilter(["ord", "pay.*"], [])
    assert f.matches("ord")
    assert not f.matches("orders")
    assert f.matches("payments")
    assert not f.matches("xpay")
    assert TopicFilter(["^orders$"], []).matches("orders")


def test_include_and_not_exclude() -> None:
    """A name must match the include list and not match the exclude list."""
    f = TopicFilter(["A\\..*"], ["A\\.secret.*"])
    assert f.matches("A.orders")
    assert not f.matches("A.secret-stuff")
    assert not f.matches("B.orders")


def test_empty_lists_match_nothing() -> None:
    """An empty include list matches nothing; an empty exclude list excludes nothing."""
    assert not TopicFilter([], []).matches("orders")
    assert not TopicFilter([], ["x"]).matches("orders")
    assert TopicFilter([".*"], []).matches("__consumer_offsets")
    assert pattern_list([]) is None


def test_inline_flags_reach_later_entries() -> None:
    """As in Java, `(?i)` in one entry applies to the entries joined after it, not before it."""
    f = TopicFilter(["abc", "(?i)def", "ghi"], [])
    assert f.matches("DEF")
    assert f.matches("GHI")
    assert not f.matches("ABC")


def test_group_filter_defaults() -> None:
    """Defaults are groups=.* and groups.exclude=`console-consumer-.*, connect-.*, __.*`."""
    g = GroupFilter()
    assert g.matches("my-group")
    assert not g.matches("console-consumer-42")
    assert not g.matches("connect-mm2")
    assert not g.matches("__internal")
    assert GroupFilter(["team-.*"], []).matches("team-a")
    assert not GroupFilter(["team-.*"], []).matches("other")


def test_filter_repr() -> None:
    """The repr shows both lists."""
    assert repr(TopicFilter(["a"], ["b"])) == "TopicFilter(include=['a'], exclude=['b'])"
    assert repr(GroupFilter([], [])) == "GroupFilter(include=[], exclude=[])"


def test_invalid_entries_fail_at_construction() -> None:
    """A pattern Java would reject is reported when the filter is built."""
    with pytest.raises(ValueError, match="illegal repetition"):
        TopicFilter(["a{"], [])
    with pytest.raises(ValueError, match="unclosed group"):
        TopicFilter(["(abc"], [])
    with pytest.raises(ValueError, match="cannot be compiled"):
        TopicFilter(["*a"], [])


@given(
    st.lists(st.text(min_size=1, max_size=10).filter(lambda s: "\\E" not in s), max_size=5),
    st.text(max_size=10),
)
def test_quoted_literals_match_exactly(names: list[str], candidate: str) -> None:
    """`\\Q...\\E` entries match exactly the quoted names, whatever characters they contain."""
    f = TopicFilter([f"\\Q{n}\\E" for n in names], [])
    for n in names:
        assert f.matches(n)
    assert f.matches(candidate) is (candidate in names)


# --- java_regex -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("\\Qa.b\\E", "a.b", True),
        ("\\Qa.b\\E", "axb", False),
        ("\\Qa.b", "a.b", True),  # \Q without \E quotes to the end
        ("a\\Q*\\E+", "a**", True),  # the quantifier applies to the last quoted character
        ("(a)\\1\\Q2\\E", "aa2", True),
        ("(a)\\12", "aa2", True),  # Java reads \12 as \1 then 2 when there is no group 12
        ("\\8", "", False),  # a reference to a missing group compiles and never matches
        ("a*+a", "aa", False),  # possessive
        ("(?>ab|a)b", "ab", False),  # atomic group
        ("(?>ab|a)b", "abb", True),
        ("\\p{Alpha}+", "Abc", True),
        ("\\p{Alpha}+", "\u00e9", False),  # POSIX classes are ASCII-only in Java
        ("\\p{IsAlpha}x", "ax", True),
        ("[\\p{Alpha}_-]+", "a_-Z", True),
        ("\\P{Digit}+", "ab", True),
        ("\\P{Digit}+", "a1", False),
        ("[^\\p{Punct}]*", "ab c", True),
        ("[^\\p{Punct}]*", "a.b", False),
        ("\\p{Alnum}*", "a1", True),
        ("\\w+", "ab_1", True),
        ("\\w+", "\u00e9", False),  # \w is ASCII in Java
        ("\\d", "\u0663", False),  # so is \d
        ("(?i)ABC|def", "DEF", True),
        ("abc(?i)D|e", "abcd", True),
        ("abc(?i)D|e", "E", True),  # the flag reaches across `|` to the end of the group
        ("(?i)(?-i:x)y", "xY", True),
        ("(?i)(?-i:x)y", "Xy", False),
        ("(?i)\u00e9", "\u00c9", False),  # Java's (?i) folds ASCII only
        ("(?<n>a)\\k<n>", "aa", True),
        ("\\x41\\u0042\\0103", "ABC", True),
        ("\\x{1F600}", "\U0001f600", True),
        ("\\cA\\e\\a", "\x01\x1b\x07", True),
        ("[a-]", "-", True),
        ("[-a]", "-", True),
        ("[]a]+", "]a", True),
        ("[^]a]", "b", True),
        ("[a&b]+", "a&b", True),
        ("[~~]", "~", True),
        ("[|]|x", "|", True),
        ("[\\d-z]", "-", True),
        ("[\\Q-]\\E]+", "-]", True),
        ("[\\x41-\\x43]+", "ABC", True),
        ("\\h+", " \t\u00a0", True),
        ("\\v", "\x0b", True),
        ("\\v", "\n", True),
        ("\\R", "\r\n", True),
        (".", "\n", False),
        (".", "\r", False),  # Java's `.` stops at every line terminator
        (".", "\x85", False),
        ("(?s).", "\x85", True),
        ("(?s)(?-s:.).", "\r\r", False),
        ("(?s)(?-s:.).", "a\r", True),
        ("a\\z", "a", True),
        ("a\\Z", "a\n", False),  # zero-width: matches() must still consume the newline
        ("a\\Z", "a", True),
        ("a{2,3}", "aaa", True),
        ("a{2,3}+", "aaaa", False),
        ("x{0}", "", True),
        ("a|b|", "", True),
    ],
)
def test_java_regex_semantics(pattern: str, text: str, expected: bool) -> None:
    """Translated patterns fully match what java.util.regex fully matches."""
    assert (java_regex(pattern).fullmatch(text) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[a-z&&[^b]]", "intersection"),
        ("[a[b]]", "nested character class"),
        ("\\p{L}", "character property"),
        ("\\p{IsLatin}", "character property"),
        ("\\G", "not supported"),
        ("\\X", "not supported"),
        ("\\b{g}", "not supported"),
        ("(?u)a", "UNICODE_CASE"),
        ("(?U)a", "UNICODE_CHARACTER_CLASS"),
        ("(?d)a", "UNIX_LINES"),
        ("(?x)a b", "COMMENTS"),
        ("(a\\1)", "still open"),
        ("[\\b]", "inside a character class"),
    ],
)
def test_java_regex_refuses_what_python_cannot_do(pattern: str, message: str) -> None:
    """Constructs Python's re cannot express raise ValueError naming the construct."""
    with pytest.raises(ValueError, match=message):
        java_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "a{",
        "a{x}",
        "a{,3}",
        "a{3,2}",
        "(a",
        "a)",
        "[a",
        "\\",
        "\\y",
        "(?P<n>a)",
        "(?#c)",
        "[b-a]",
        "\\0",
        "\\xZ",
        "\\u12",
    ],
)
def test_java_regex_rejects_invalid_java_patterns(pattern: str) -> None:
    """Patterns that java.util.regex rejects raise ValueError rather than match something else."""
    with pytest.raises(ValueError, match="Java regex"):
        java_regex(pattern)


def test_java_regex_is_ascii_by_default() -> None:
    """Patterns are compiled with re.ASCII, which gives Java's default \\w, \\d, \\s, \\b and (?i)."""
    assert java_regex("a").flags & re.ASCII


# --- ConfigPropertyFilter and topic configs -------------------------------------------------------------


def test_config_property_filter_defaults_4_3() -> None:
    """The 4.3+ default excludes replication throttles, timestamp settings, unclean election and min ISR."""
    f = ConfigPropertyFilter()
    for name in DEFAULT_CONFIG_PROPERTIES_EXCLUDE:
        assert not f.should_replicate_config_property(name)
    assert not f.should_replicate_config_property("log.message.timestamp.after.max.ms")
    assert f.should_replicate_config_property("cleanup.policy")
    assert f.should_replicate_config_property("retention.ms")
    # The default's dots are not escaped, so they match any character (as in Java).
    assert not f.should_replicate_config_property("min_insync_replicas")


def test_config_property_filter_custom_and_empty() -> None:
    """A custom exclude list replaces the default; an empty one excludes nothing."""
    f = ConfigPropertyFilter(["segment\\..*", "retention\\.ms"])
    assert not f.should_replicate_config_property("segment.bytes")
    assert not f.should_replicate_config_property("retention.ms")
    assert f.should_replicate_config_property("retention.bytes")
    assert ConfigPropertyFilter([]).should_replicate_config_property("min.insync.replicas")


def test_use_defaults_from() -> None:
    """Only `use.defaults.from=source` copies the source's defaults; Java compares case-sensitively."""
    assert not ConfigPropertyFilter().should_replicate_source_default("retention.ms")
    assert ConfigPropertyFilter(use_defaults_from="source").should_replicate_source_default("retention.ms")
    assert not ConfigPropertyFilter(use_defaults_from="Source").should_replicate_source_default()
    assert "use_defaults_from='source'" in repr(ConfigPropertyFilter(use_defaults_from="source"))


ENTRIES: list[ConfigEntryTuple] = [
    ("cleanup.policy", "compact", False, False, ConfigSource.DYNAMIC_TOPIC_CONFIG),
    ("retention.ms", "604800000", False, False, ConfigSource.DEFAULT_CONFIG),
    ("segment.bytes", "1048576", False, False, ConfigSource.DYNAMIC_BROKER_CONFIG),
    ("max.message.bytes", "2000000", False, False, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
    ("compression.type", "lz4", False, False, ConfigSource.STATIC_BROKER_CONFIG),
    ("min.insync.replicas", "2", False, False, ConfigSource.DYNAMIC_TOPIC_CONFIG),
    ("some.password", None, False, True, ConfigSource.DYNAMIC_TOPIC_CONFIG),
    ("read.only", "x", True, False, ConfigSource.DYNAMIC_TOPIC_CONFIG),
    ("unknown.source", "u", False, False, ConfigSource.UNKNOWN),
    ("local.retention.ms", "-2", False, False, 5),
]


def test_filter_topic_configs_for_creation() -> None:
    """Creation copies non-defaults (dynamic broker values too), not static, read-only, secret or excluded."""
    assert filter_topic_configs(ENTRIES, ConfigPropertyFilter()) == {
        "cleanup.policy": "compact",
        "segment.bytes": "1048576",
        "max.message.bytes": "2000000",
        "unknown.source": "u",
    }


def test_filter_topic_configs_with_source_defaults() -> None:
    """With use.defaults.from=source the source's defaults are copied too."""
    got = filter_topic_configs(ENTRIES, ConfigPropertyFilter(use_defaults_from="source"))
    assert got["retention.ms"] == "604800000"
    assert got["local.retention.ms"] == "-2"
    assert "compression.type" not in got
    assert "min.insync.replicas" not in got


def test_config_sync_ops_delete_defaults() -> None:
    """Config sync SETs non-defaults and DELETEs (resets) source defaults, in entry order."""
    assert config_sync_ops(ENTRIES, ConfigPropertyFilter()) == [
        ("cleanup.policy", "SET", "compact"),
        ("retention.ms", "DELETE", "604800000"),
        ("segment.bytes", "SET", "1048576"),
        ("max.message.bytes", "SET", "2000000"),
        ("unknown.source", "SET", "u"),
        ("local.retention.ms", "DELETE", "-2"),
    ]


def test_config_sync_ops_with_source_defaults() -> None:
    """With use.defaults.from=source every kept entry is a SET."""
    ops = config_sync_ops(ENTRIES, ConfigPropertyFilter(use_defaults_from="source"))
    assert {op for _name, op, _value in ops} == {"SET"}
    assert ("retention.ms", "SET", "604800000") in ops


def test_config_sync_respects_the_exclude_list() -> None:
    """Excluded properties are neither set nor reset; an empty list lets min.insync.replicas through."""
    assert "min.insync.replicas" not in {
        name for name, _op, _v in config_sync_ops(ENTRIES, ConfigPropertyFilter())
    }
    assert ("min.insync.replicas", "SET", "2") in config_sync_ops(ENTRIES, ConfigPropertyFilter([]))
