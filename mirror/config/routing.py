"""Where each mm2.properties key goes: :func:`properties_layer` splits the keys the way Java's
``MirrorMakerConfig`` does (docs/mm2-compat.md §8) into a :class:`~mirror.config.layer.ConfigLayer`, and
:func:`java_key` names a model path the Java way for error messages.

The key tables (:data:`FLOW_KEYS`, :data:`SERVICE_KEYS`, the Java keys that are accepted but unused, the
removed ones and the worker keys) are the one list of known keys: they drive both the translation and the
unknown-key warnings. Cluster client keys are in :mod:`mirror.config.security`, per-role client keys
(``A.consumer.max.poll.records``) in :mod:`mirror.config.client_keys`.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from mirror.config.layer import ConfigLayer
from mirror.config.problems import closest_key_hint
from mirror.config.properties import resolve_variables
from mirror.config.security import CLUSTER_KEYS

# --- The key tables -------------------------------------------------------------------------------


class Where(enum.Flag):
    """Where a flow key may be written in mm2.properties."""

    TOP_LEVEL = enum.auto()  # `tasks.max=4`: copied into every flow (an MM2 connector key)
    FLOW = enum.auto()  # `A->B.tasks.max=4`
    TARGET = enum.auto()  # `B.offset.flush.interval.ms=...`: a Connect worker key of the flows writing to B


_CONNECTOR = Where.TOP_LEVEL | Where.FLOW

#: Java key -> where it may appear. The FlowSettings field is the key with `.` and `-` turned into `_`.
FLOW_KEYS: dict[str, Where] = {
    "enabled": _CONNECTOR,
    "topics": _CONNECTOR,
    "topics.exclude": _CONNECTOR,
    "groups": _CONNECTOR,
    "groups.exclude": _CONNECTOR,
    "tasks.max": _CONNECTOR,
    "replication.factor": _CONNECTOR,
    "heartbeats.topic.replication.factor": _CONNECTOR,
    "checkpoints.topic.replication.factor": _CONNECTOR,
    "offset-syncs.topic.replication.factor": _CONNECTOR,
    "offset.storage.replication.factor": _CONNECTOR | Where.TARGET,
    "offset.storage.partitions": _CONNECTOR | Where.TARGET,
    "offset.storage.topic": _CONNECTOR | Where.TARGET,
    "refresh.topics.enabled": _CONNECTOR,
    "refresh.topics.interval.seconds": _CONNECTOR,
    "remote.topics.delete.enabled": _CONNECTOR,  # ours: Java MM2 never deletes a remote topic
    "remote.topics.delete.delay.seconds": _CONNECTOR,  # ours
    "refresh.groups.enabled": _CONNECTOR,
    "refresh.groups.interval.seconds": _CONNECTOR,
    "emit.heartbeats.enabled": _CONNECTOR,
    "emit.heartbeats.interval.seconds": _CONNECTOR,
    "emit.checkpoints.enabled": _CONNECTOR,
    "emit.checkpoints.interval.seconds": _CONNECTOR,
    "sync.group.offsets.enabled": _CONNECTOR,
    "sync.group.offsets.interval.seconds": _CONNECTOR,
    "sync.topic.configs.enabled": _CONNECTOR,
    "sync.topic.configs.interval.seconds": _CONNECTOR,
    "sync.topic.acls.enabled": _CONNECTOR,
    "sync.topic.acls.interval.seconds": _CONNECTOR,
    "emit.offset-syncs.enabled": _CONNECTOR,
    "offset-syncs.topic.location": _CONNECTOR,
    "offset.lag.max": _CONNECTOR,
    "heartbeats.replication.enabled": _CONNECTOR,
    "replication.policy.class": _CONNECTOR,
    "replication.policy.separator": _CONNECTOR,
    "replication.policy.internal.topic.separator.enabled": _CONNECTOR,
    "config.properties.exclude": _CONNECTOR,
    "use.defaults.from": Where.FLOW,
    "consumer.poll.timeout.ms": _CONNECTOR,
    "admin.timeout.ms": _CONNECTOR,
    "offset.flush.interval.ms": Where.FLOW | Where.TARGET,
    "exactly.once.support": Where.FLOW,
    "task.stuck.timeout.seconds": _CONNECTOR,
    "throttle.bytes.per.second": _CONNECTOR,
    # mirror's own (Java MM2 has no such keys): records the target refuses (docs/guarantees.md)
    "rejected.records.policy": Where.FLOW,
    "rejected.records.retry.backoff.ms": _CONNECTOR,
    "rejected.records.retry.backoff.max.ms": _CONNECTOR,
}


def flow_field(java_key: str) -> str:
    """The FlowSettings field of a :data:`FLOW_KEYS` key: ``offset-syncs.topic.location`` ->
    ``offset_syncs_topic_location``."""
    return java_key.replace("-", "_").replace(".", "_")


#: Connect worker keys of a target cluster (`B.offset.flush.interval.ms`) -> the FlowSettings field they feed.
TARGET_WORKER_KEYS: dict[str, str] = {
    key: flow_field(key) for key, where in FLOW_KEYS.items() if Where.TARGET in where
}

#: Our own keys (not Java's): `service.http.port=9000` -> ServiceSettings.http_port.
SERVICE_KEYS = (
    "service.http.host",
    "service.http.port",
    "service.log.format",
    "service.log.level",
    "service.group",
    "service.clusters.served",
    "service.control.token",
    "service.control.token.file",
)

_CLIENT_ROLES = ("consumer", "producer", "admin")

#: Per-flow client key prefixes -> (FlowSettings field, precedence), or None for real Java client keys of
#: clients that mirror does not configure per flow. FlowSettings.consumer is the replication consumer (it
#: reads the source) and FlowSettings.producer the replication producer (it writes to the target).
FLOW_CLIENT_PREFIXES: dict[str, tuple[str, int] | None] = {
    "consumer.": ("consumer", 0),
    "source.consumer.": ("consumer", 1),
    "producer.": ("producer", 0),
    "target.producer.": ("producer", 1),
    "producer.override.": ("producer", 2),  # Connect's per-connector override of the worker's producer
    "target.consumer.": None,
    "source.producer.": None,
    "admin.": None,
    "source.admin.": None,
    "target.admin.": None,
    "consumer.override.": None,
    "admin.override.": None,
}

#: Real Java MM2/Connect keys that mirror does not use: accepted without a warning.
_UNUSED_KEYS = frozenset(
    {
        "dedicated.mode.enable.internal.rest",
        "config.providers",
        "listeners",
        "rest.advertised.host.name",
        "rest.advertised.port",
        "rest.advertised.listener",
        "access.control.allow.origin",
        "access.control.allow.methods",
        "response.http.headers.config",
        "name",
        "connector.class",
        "tasks.max.enforce",
        "key.converter",
        "value.converter",
        "header.converter",
        "config.action.reload",
        "transforms",
        "predicates",
        "transaction.boundary",
        "transaction.boundary.interval.ms",
        "offsets.storage.topic",
        "topic.filter.class",
        "group.filter.class",
        "config.property.filter.class",
        "forwarding.admin.class",
        "metric.reporters",
        "metric.names.formats",
        "source.cluster.alias",
        "target.cluster.alias",
        "add.source.alias.to.metrics",
        "use.incremental.alter.configs",
        "emit.heartbeats",
    }
)
#: Prefixes of unused Java keys; at top level these include Connect's accepted worker prefixes
#: (docs/mm2-compat.md §8).
_UNUSED_PREFIXES = (
    "config.providers.",
    "listeners.https.",
    "transforms.",
    "predicates.",
    "errors.",
    "topic.creation.",
    "key.converter.",
    "value.converter.",
    "header.converter.",
    "offset.storage",
    "config.storage",
    "status.storage",
    "task",
    "worker",
    "replication.policy",
)
#: Connect worker and client keys often set per cluster (`B.group.id`) or per flow; kept, never warned about.
_WORKER_KEYS = frozenset(
    {
        "group.id",
        "client.id",
        "offset.flush.timeout.ms",
        "exactly.once.source.support",
        "scheduled.rebalance.max.delay.ms",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "rebalance.timeout.ms",
        "connections.max.idle.ms",
        "request.timeout.ms",
        "retry.backoff.ms",
        "reconnect.backoff.ms",
        "metadata.max.age.ms",
        "client.dns.lookup",
        "config.storage.topic",
        "status.storage.topic",
        "config.storage.replication.factor",
        "status.storage.replication.factor",
        "status.storage.partitions",
    }
)
#: Removed in Kafka 4.0; ignored (as 4.x does) with a warning naming the replacement.
_REMOVED_KEYS = {
    "topics.blacklist": "topics.exclude",
    "groups.blacklist": "groups.exclude",
    "config.properties.blacklist": "config.properties.exclude",
}


def _is_unused_java_key(key: str) -> bool:
    return key in _UNUSED_KEYS or key in _WORKER_KEYS or key.startswith(_UNUSED_PREFIXES)


def is_client_key(key: str) -> bool:
    """Keys that Java copies from the top level into every cluster (MirrorClientConfig.CLIENT_CONFIG_DEF)."""
    return key in ("bootstrap.servers", "security.protocol") or key.startswith(("ssl.", "sasl."))


# --- mm2.properties keys -> a layer ----------------------------------------------------------------------

_ALIAS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
ALIAS_ALLOWED = "letters, digits, '_' and '-' (not starting with '-')"
_FLOW_KEY_ALLOWED = "<source>-><target>.<key>, such as A->B.enabled"


def properties_layer(
    properties: Mapping[str, str], *, aliases: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> ConfigLayer:
    """Split mm2.properties keys into a :class:`ConfigLayer` (values are trimmed, as Kafka's ConfigDef does).

    ``aliases`` are the clusters known from other sources; a ``clusters`` key replaces them. Variables of
    the declared ``config.providers`` (``${file:path:key}``, ``${dir:path:file}``, ``${env:NAME}``) are
    replaced first, as Java does; ``env`` is what EnvVarConfigProvider reads (default: os.environ).
    """
    layer = ConfigLayer()
    values = {key: value.strip() for key, value in properties.items()}
    values = resolve_variables(layer, values, os.environ if env is None else env)
    if "clusters" in values:
        layer.aliases = _cluster_list(layer, values.pop("clusters"))
        aliases = layer.aliases
        for alias in aliases:
            layer.data["clusters"][alias] = {}
    per_cluster: dict[str, dict[str, str]] = {alias: {} for alias in aliases}
    top_client: dict[str, str] = {}
    for key, value in sorted(values.items(), key=_precedence):
        alias, _, rest = key.partition(".")
        if "->" in key:
            _flow_key(layer, key, value)
        elif key.startswith("service."):
            _service_key(layer, key, value)
        elif alias in per_cluster and rest:
            per_cluster[alias][rest] = value
        elif is_client_key(key):
            top_client[key] = value
        else:
            _top_level_key(layer, key, value)
    _cluster_keys(layer, ("cluster_defaults",), "", top_client, top_client)
    for alias, keys in per_cluster.items():
        _cluster_keys(layer, ("clusters", alias), f"{alias}.", keys, {**top_client, **keys})
    return layer


def _cluster_list(layer: ConfigLayer, value: str) -> list[str]:
    aliases = [alias.strip() for alias in value.split(",")] if value else []
    allowed = "a comma-separated list of distinct cluster aliases"
    if not aliases:
        layer.fail("clusters", None, allowed, "missing value")
    elif any(not _ALIAS.fullmatch(alias) for alias in aliases):
        layer.fail("clusters", value, f"{allowed}, made of {ALIAS_ALLOWED}")
    elif len(set(aliases)) != len(aliases):
        layer.fail("clusters", value, f"{allowed} (duplicates are rejected, as in Kafka 4.2+)")
    return list(dict.fromkeys(alias for alias in aliases if alias))


def _cluster_keys(
    layer: ConfigLayer,
    path: tuple[str, ...],
    prefix: str,
    keys: Mapping[str, str],
    context: Mapping[str, str],
) -> None:
    """Translate one cluster's keys (``prefix`` is ``"A."``), or the top-level client keys (prefix ``""``)."""
    for key, value in keys.items():
        written = prefix + key
        role, _, client_key = key.partition(".")
        if key in CLUSTER_KEYS:
            try:
                fields = CLUSTER_KEYS[key].convert(value, context)
            except ValueError as exc:
                layer.fail(written, value, str(exc))
                continue
            for name, field_value in fields.items():
                layer.set((*path, name), field_value, written)
        elif role in _CLIENT_ROLES and client_key:
            layer.set((*path, role, client_key), value, written)
        else:
            layer.set((*path, "properties", key), value, written)
            _warn_if_typo(layer, written, prefix, key)


def _warn_if_typo(layer: ConfigLayer, written: str, prefix: str, key: str) -> None:
    """Per-cluster keys may be any Connect/client key, so only near-misses of known keys are reported."""
    known = [*CLUSTER_KEYS, *TARGET_WORKER_KEYS, *_WORKER_KEYS]
    if key in known or key.startswith(("ssl.", "sasl.")):
        return
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
    if close:
        layer.warnings.append(
            f"unknown key {written!r} is kept as a client property; did you mean {prefix + close[0]!r}?"
        )


def split_flow_name(name: str) -> tuple[str, str] | None:
    """``"A->B"`` -> ``("A", "B")``; None if ``name`` is not two aliases joined by ``->``."""
    source, arrow, target = name.partition("->")
    if arrow and _ALIAS.fullmatch(source) and _ALIAS.fullmatch(target):
        return source, target
    return None


def _flow_key(layer: ConfigLayer, key: str, value: str) -> None:
    name, _, sub = key.partition(".")
    if split_flow_name(name) is None or not sub:
        layer.fail(key, None, _FLOW_KEY_ALLOWED, "malformed flow key")
        return
    flow = ("flows", name)
    prefix = _flow_client_prefix(sub)
    client = FLOW_CLIENT_PREFIXES[prefix] if prefix is not None else None
    if sub in FLOW_KEYS:
        layer.set((*flow, flow_field(sub)), value, key)
    elif prefix is not None and client is not None:
        layer.set((*flow, client[0], sub.removeprefix(prefix)), value, key)
    elif prefix is None and not _is_unused_java_key(sub):
        layer.warnings.append(_unknown(key, [f"{name}.{known}" for known in FLOW_KEYS]))


def _flow_client_prefix(sub: str) -> str | None:
    """The longest :data:`FLOW_CLIENT_PREFIXES` entry that ``sub`` starts with (and goes beyond)."""
    matches = [prefix for prefix in FLOW_CLIENT_PREFIXES if sub.startswith(prefix) and len(sub) > len(prefix)]
    return max(matches, key=len, default=None)


def _precedence(item: tuple[str, str]) -> int:
    """Sort key applying ``A->B.producer.x`` before ``A->B.producer.override.x``, which must win."""
    sub = item[0].partition("->")[2].partition(".")[2]
    prefix = _flow_client_prefix(sub)
    target = FLOW_CLIENT_PREFIXES[prefix] if prefix is not None else None
    return target[1] if target is not None else 0


def _service_key(layer: ConfigLayer, key: str, value: str) -> None:
    if key in SERVICE_KEYS:
        layer.set(("service", key.removeprefix("service.").replace(".", "_")), value, key)
    else:
        layer.warnings.append(_unknown(key, SERVICE_KEYS))


def _top_level_key(layer: ConfigLayer, key: str, value: str) -> None:
    where = FLOW_KEYS.get(key)
    role = key.partition(".")[0]
    if where is not None and Where.TOP_LEVEL in where:
        layer.set(("defaults", flow_field(key)), value, key)
    elif where is not None:
        scope = "per target cluster, e.g. 'B." if Where.TARGET in where else "per flow, e.g. 'A->B."
        layer.warnings.append(f"{key!r} has no effect at top level (as in Java MM2); set it {scope}{key}'")
    elif role in _CLIENT_ROLES:
        layer.warnings.append(
            f"{key!r} has no effect at top level (as in Java MM2); "
            f"set it per cluster ('A.{key}') or per flow ('A->B.{key}')"
        )
    elif key in _REMOVED_KEYS:
        layer.warnings.append(f"{key!r} was removed in Kafka 4.0 and is ignored; use {_REMOVED_KEYS[key]!r}")
    elif _is_unused_java_key(key) and not _looks_like_known(key):
        return
    else:
        layer.warnings.append(_unknown(key, [*FLOW_KEYS, *SERVICE_KEYS, "clusters"]))


def _looks_like_known(key: str) -> bool:
    """A key accepted by prefix (``tasks.maxx`` matches Java's ``task`` prefix) that is really a typo."""
    return bool(difflib.get_close_matches(key, FLOW_KEYS, n=1, cutoff=0.9))


def _unknown(key: str, known: Iterable[str]) -> str:
    return f"unknown key {key!r} is ignored; {closest_key_hint(key, known)}"


# --- Naming model paths the Java way --------------------------------------------------------------

_CLUSTER_FIELD_KEYS = {name: key for key, spec in CLUSTER_KEYS.items() for name in spec.fields}
_FLOW_FIELD_KEYS = {flow_field(key): key for key in FLOW_KEYS}


def java_key(path: Sequence[str]) -> str:
    """The mm2.properties key of a model path: ``(clusters, A, sasl_mechanism)`` -> ``A.sasl.mechanism``."""
    section, *rest = path
    if section == "service" and rest:
        return "service." + rest[0].replace("_", ".")
    if section in ("clusters", "flows") and len(rest) >= 2:
        owner, name, *inner = rest
        table = _CLUSTER_FIELD_KEYS if section == "clusters" else _FLOW_FIELD_KEYS
        if name == "properties" and inner:
            return f"{owner}.{inner[0]}"
        if name in _CLIENT_ROLES and inner:
            return f"{owner}.{name}.{inner[0]}"
        return f"{owner}.{table.get(name, name)}"
    return ".".join(path)
