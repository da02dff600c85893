"""Topic and group filters with Java MirrorMaker 2 semantics (docs/mm2-compat.md §3).

The default Java filters join the entries of a LIST config with `|` into one `java.util.regex.Pattern` and
test names with `matcher(name).matches()` (a full match). An empty list matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mirror.mm2.java_regex import java_regex

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_GROUPS_EXCLUDE",
    "DEFAULT_TOPICS",
    "DEFAULT_TOPICS_EXCLUDE",
    "GroupFilter",
    "TopicFilter",
    "full_match",
    "pattern_list",
]

DEFAULT_TOPICS: Final = (".*",)
DEFAULT_TOPICS_EXCLUDE: Final = ("mm2.*\\.internal", ".*\\.replica", "__.*")  # 4.0+
DEFAULT_GROUPS: Final = (".*",)
DEFAULT_GROUPS_EXCLUDE: Final = ("console-consumer-.*", "connect-.*", "__.*")


def pattern_list(entries: Sequence[str]) -> re.Pattern[str] | None:
    """Java `MirrorUtils.compilePatternList`: entries joined with `|`; None (match nothing) when empty."""
    if not entries:
        return None
    return java_regex("|".join(entries))


def full_match(pattern: re.Pattern[str] | None, name: str) -> bool:
    return pattern is not None and pattern.fullmatch(name) is not None


class TopicFilter:
    """Java `DefaultTopicFilter`: full match of `topics` and no full match of `topics.exclude`."""

    __slots__ = ("_exclude", "_include", "exclude", "include")

    def __init__(
        self, include: Sequence[str] = DEFAULT_TOPICS, exclude: Sequence[str] = DEFAULT_TOPICS_EXCLUDE
    ):
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._include = pattern_list(self.include)
        self._exclude = pattern_list(self.exclude)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(include={list(self.include)!r}, exclude={list(self.exclude)!r})"

    def matches(self, name: str) -> bool:
        return full_match(self._include, name) and not full_match(self._exclude, name)


class GroupFilter(TopicFilter):
    """Java `DefaultGroupFilter`: full match of `groups` and no full match of `groups.exclude`."""

    __slots__ = ()

    def __init__(
        self, include: Sequence[str] = DEFAULT_GROUPS, exclude: Sequence[str] = DEFAULT_GROUPS_EXCLUDE
    ):
        super().__init__(include, exclude)
