"""Which topic configs are replicated, Java MirrorMaker 2's rules (docs/mm2-compat.md §4).

`config.properties.exclude` names what is never copied; `use.defaults.from` says whose defaults count.
The planners here take DescribeConfigs entries and return what to set or delete on the remote topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Final, Literal

from mirror.mm2.filters import full_match, pattern_list

__all__ = [
    "DEFAULT_CONFIG_PROPERTIES_EXCLUDE",
    "ConfigEntryTuple",
    "ConfigOp",
    "ConfigPropertyFilter",
    "ConfigSource",
    "config_sync_ops",
    "filter_topic_configs",
]

DEFAULT_CONFIG_PROPERTIES_EXCLUDE: Final = (  # 4.3+ (KAFKA-20163); the dots are not escaped in Java either
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "message.timestamp.difference.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "message.timestamp.type",
    "unclean.leader.election.enable",
    "min.insync.replicas",
)


class ConfigSource(IntEnum):
    """`config_source` codes of DescribeConfigs v1+ (Java `ConfigEntry.ConfigSource`)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


ConfigEntryTuple = tuple[str, str | None, bool, bool, int]
"""(name, value, read_only, is_sensitive, config_source) as DescribeConfigs returns them."""
ConfigOp = Literal["SET", "DELETE"]


class ConfigPropertyFilter:
    """Java `DefaultConfigPropertyFilter`: `config.properties.exclude` and `use.defaults.from`.

    Like Java, only the exact value `source` of `use_defaults_from` means "copy the source's defaults";
    anything else behaves as `target`.
    """

    __slots__ = ("_exclude", "exclude", "use_defaults_from")

    def __init__(
        self,
        exclude: Sequence[str] = DEFAULT_CONFIG_PROPERTIES_EXCLUDE,
        use_defaults_from: str = "target",
    ) -> None:
        self.exclude = tuple(exclude)
        self.use_defaults_from = use_defaults_from
        self._exclude = pattern_list(self.exclude)

    def __repr__(self) -> str:
        exclude, use = list(self.exclude), self.use_defaults_from
        return f"ConfigPropertyFilter(exclude={exclude!r}, use_defaults_from={use!r})"

    def should_replicate_config_property(self, name: str) -> bool:
        """False for names fully matching `config.properties.exclude`."""
        return not full_match(self._exclude, name)

    def should_replicate_source_default(self, prop: object = None) -> bool:
        """Whether a property that is a *default* on the source is copied (SET) rather than reset (DELETE).

        Java passes the property name; the default filter ignores it and answers `use.defaults.from=source`.
        """
        del prop
        return self.use_defaults_from == "source"


def _syncable(
    entries: Iterable[ConfigEntryTuple], prop_filter: ConfigPropertyFilter
) -> Iterable[ConfigEntryTuple]:
    """Java `MirrorSourceConnector.targetConfig` filters common to creation and sync."""
    for entry in entries:
        name, _value, read_only, sensitive, source = entry
        if read_only or sensitive or source == ConfigSource.STATIC_BROKER_CONFIG:
            continue
        if prop_filter.should_replicate_config_property(name):
            yield entry


def filter_topic_configs(
    entries: Iterable[ConfigEntryTuple], prop_filter: ConfigPropertyFilter
) -> dict[str, str | None]:
    """The configs MM2 sends with `createTopics` for a new remote topic, from the source's DescribeConfigs.

    Keeps non-default entries (dynamic broker and cluster-default values count as non-default) and the
    defaults only when `use.defaults.from=source`; drops read-only, sensitive, STATIC_BROKER_CONFIG and
    excluded properties. (Java would throw on a kept entry with a null value; here it is kept as None.)
    """
    return {
        name: value
        for name, value, _ro, _sens, source in _syncable(entries, prop_filter)
        if source != ConfigSource.DEFAULT_CONFIG or prop_filter.should_replicate_source_default(name)
    }


def config_sync_ops(
    entries: Iterable[ConfigEntryTuple], prop_filter: ConfigPropertyFilter
) -> list[tuple[str, ConfigOp, str | None]]:
    """The `incrementalAlterConfigs` ops of the periodic config sync for one remote topic, in entry order.

    After the same filters as creation (but keeping defaults), a source default becomes DELETE (reset to the
    target's default) unless `use.defaults.from=source`; everything else is SET with the source value.
    """
    ops: list[tuple[str, ConfigOp, str | None]] = []
    for name, value, _ro, _sens, source in _syncable(entries, prop_filter):
        if source == ConfigSource.DEFAULT_CONFIG and not prop_filter.should_replicate_source_default(name):
            ops.append((name, "DELETE", value))
        else:
            ops.append((name, "SET", value))
    return ops
