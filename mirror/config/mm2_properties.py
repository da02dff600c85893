"""Reader for Java MirrorMaker 2 ``mm2.properties`` files.

Two pure steps:

1. :func:`parse_properties` reads ``java.util.Properties`` syntax: ``key=value``, ``key: value`` and
   ``key value``; ``#``/``!`` comment lines; ``\\`` line continuations; ``\\t``, ``\\uXXXX``... escapes.
2. :func:`translate` splits the keys the way Java's ``MirrorMakerConfig`` does (docs/mm2-compat.md §8) into a
   :class:`ConfigLayer`, the dict form of :mod:`mirror.config`'s models. ``mirror.config`` validates the
   layer, merges it with the other sources (environment, command line) and resolves it into ``Settings``.

The key tables below (:data:`FLOW_KEYS`, :data:`CLUSTER_KEYS`, :data:`SERVICE_KEYS` and the Java keys that
are accepted but unused) are the one list of known keys: they drive both the translation and the unknown-key
warnings.

This is the lower of the two configuration modules: it also holds what ``mirror.config`` shares with it
(:class:`ConfigProblem`, :func:`is_secret_key`, :func:`java_key`) and imports nothing from it.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASK = "********"
_SECRET_MARKERS = ("password", "secret", "jaas", "keystore.key", "keystore_key", "credential", "token")
SECTIONS = ("clusters", "cluster_defaults", "defaults", "flows", "service")


def is_secret_key(key: str) -> bool:
    """Whether values of this key (Java key, field name or override key) must never be shown.

    ``<field>_file`` keys name the file a secret is read from: the path is shown, not the secret."""
    lowered = key.lower()
    if lowered.endswith("_file"):
        return False
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _shown(key: str, value: object) -> str:
    if is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return str({k: MASK if is_secret_key(str(k)) else v for k, v in value.items()})
    return str(value)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: the key as the user wrote it, the value and what is allowed."""

    key: str
    value: str | None  # None when the key is missing; "********" for secrets
    allowed: str
    problem: str = "invalid value"

    @classmethod
    def of(cls, key: str, value: object, allowed: str, problem: str = "invalid value") -> ConfigProblem:
        """Build a problem, masking the value when the key holds a secret."""
        return cls(key, None if value is None else _shown(key, value), allowed, problem)

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.key}: {self.problem} (allowed: {self.allowed})"
        return f"{self.key}: {self.problem} '{self.value}' (allowed: {self.allowed})"  # as written, unescaped


@dataclass
class ConfigLayer:
    """One configuration source in the dict form of ``mirror.config``'s models, not yet validated.

    ``data`` has the sections ``clusters`` (alias -> ClusterSettings fields), ``cluster_defaults``
    (ClusterSettings fields for every cluster), ``defaults`` (FlowSettings fields for every flow), ``flows``
    ("A->B" -> FlowSettings fields) and ``service`` (ServiceSettings fields). ``aliases`` is the cluster list
    if this source declares one. ``origins`` maps each path set in ``data`` to the key as the user wrote it.
    """

    aliases: list[str] | None = None
    data: dict[str, Any] = field(default_factory=lambda: {section: {} for section in SECTIONS})
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)

    def set(self, path: tuple[str, ...], value: Any, written: str) -> None:
        """Store ``value`` at ``path`` inside ``data``, remembering that the user wrote it as ``written``."""
        node = self.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        self.origins[path] = written

    def origin(self, path: tuple[str, ...]) -> str:
        """The key as written for ``path`` (or for the first key set below it)."""
        if path in self.origins:
            return self.origins[path]
        below = (written for known, written in self.origins.items() if known[: len(path)] == path)
        return next(below, ".".join(path))

    def fail(self, key: str, value: object, allowed: str, problem: str = "invalid value") -> None:
        """Record a problem with ``key``."""
        self.problems.append(ConfigProblem.of(key, value, allowed, problem))


# --- java.util.Properties syntax ------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    """One ``key=value`` entry of a .properties file, after unescaping, with its (first) line number."""

    key: str
    value: str
    line: int


_BLANKS = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(
    text: str, *, source: str = "<properties>"
) -> tuple[list[Property], list[ConfigProblem]]:
    """Parse ``text`` with the rules of ``java.util.Properties.load``; problems are keyed ``source:line``."""
    entries: list[Property] = []
    problems: list[ConfigProblem] = []
    for line_number, logical in _logical_lines(text):
        raw_key, raw_value = _split_key_value(logical)
        try:
            entries.append(Property(_unescape(raw_key), _unescape(raw_value), line_number))
        except ValueError as exc:
            problems.append(
                ConfigProblem.of(f"{source}:{line_number}", None, "\\uXXXX with 4 hex digits", str(exc))
            )
    return entries, problems


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Join continued lines, drop blank and comment lines; yield (first line number, logical line)."""
    pending: str | None = None
    start = 0
    for number, natural in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = natural.lstrip(_BLANKS)
        if pending is None:
            if not stripped or stripped[0] in "#!":
                continue
            pending, start = "", number
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            pending += stripped[:-1]
            continue
        yield start, pending + stripped
        pending = None
    if pending is not None:
        yield start, pending


def _split_key_value(line: str) -> tuple[str, str]:
    """Split at the first unescaped ``=``, ``:`` or blank, as Java does."""
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char in "=:":
            return line[:i], line[i + 1 :].lstrip(_BLANKS)
        if char in _BLANKS:
            rest = line[i:].lstrip(_BLANKS)
            if rest[:1] in ("=", ":") and rest:
                rest = rest[1:].lstrip(_BLANKS)
            return line[:i], rest
        i += 1
    return line, ""


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        escaped = text[i + 1]
        if escaped == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("malformed \\uxxxx escape")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(escaped, escaped))
        i += 2
    # \uXXXX escapes are UTF-16 code units, as in Java: join surrogate pairs into one character.
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def read_properties(
    text: str, *, source: str, aliases: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> ConfigLayer:
    """Parse and translate the text of an mm2.properties file (the last of repeated keys wins, as in Java).

    ``env`` is what ``${env:NAME}`` variables read (default: the process environment)."""
    entries, problems = parse_properties(text, source=source)
    latest: dict[str, Property] = {}
    warnings: list[str] = []
    for entry in entries:
        if entry.key in latest:
            first = latest.pop(entry.key).line
            warnings.append(
                f"key {entry.key!r} is set on lines {first} and {entry.line}; the last value wins"
            )
        latest[entry.key] = entry
    layer = translate({key: entry.value for key, entry in latest.items()}, aliases=aliases, env=env)
    layer.problems[:0] = problems
    layer.warnings[:0] = warnings
    return layer


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


# --- Cluster keys ---------------------------------------------------------------------------------

_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_JAAS_ALLOWED = f'{_PLAIN_LOGIN} or {_SCRAM_LOGIN} required username="..." password="...";'
_JAAS_LINE = re.compile(
    r"\s*(?P<module>[\w.$]+)\s+(?:required|requisite|sufficient|optional)(?P<options>.*);\s*", re.DOTALL
)
_JAAS_OPTION = re.compile(r'\s*(?P<name>[\w.]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s";]+))')


def _parse_jaas(value: str, _context: Mapping[str, str]) -> dict[str, Any]:
    """``sasl.jaas.config`` of the Plain or Scram login module -> username and password."""
    line = _JAAS_LINE.fullmatch(value)
    if line is None or line["module"] not in (_PLAIN_LOGIN, _SCRAM_LOGIN):
        raise ValueError(_JAAS_ALLOWED)
    options: dict[str, str] = {}
    rest = line["options"]
    while rest.strip():
        option = _JAAS_OPTION.match(rest)
        if option is None:
            raise ValueError(_JAAS_ALLOWED)
        quoted = option["quoted"]
        options[option["name"]] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else option["bare"]
        rest = rest[option.end() :]
    if "username" not in options or "password" not in options:
        raise ValueError(_JAAS_ALLOWED)
    return {"sasl_username": options["username"], "sasl_password": options["password"]}


_STORE_TYPES = ("JKS", "PKCS12", "PEM")


def _store_type(type_key: str, location_key: str) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    """``ssl.*store.type``: JKS (Java's default), PKCS12 or PEM; others get the keytool conversion command."""

    def convert(value: str, context: Mapping[str, str]) -> dict[str, Any]:
        if value.upper() not in _STORE_TYPES:
            location = context.get(location_key, "<store>")
            raise ValueError(
                f"JKS, PKCS12 or PEM; {value} stores cannot be read here: convert it to PKCS12 with "
                f"keytool -importkeystore -srckeystore {location} -srcstoretype {value} "
                f"-destkeystore {location}.p12 -deststoretype PKCS12"
            )
        return {}

    return convert


def _store_location(
    pem_field: str, store_field: str, type_key: str
) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    """A PEM location (``type=PEM``) is a PEM file; a JKS or PKCS12 one is read by mirror.kafka.tls."""

    def convert(value: str, context: Mapping[str, str]) -> dict[str, Any]:
        store_type = context.get(type_key, "JKS").strip().upper()
        if store_type == "PEM":
            return {pem_field: value}
        if store_type in _STORE_TYPES:
            return {store_field: value}
        return {}  # the type key reports the problem

    return convert


def _check_hostname(value: str, _context: Mapping[str, str]) -> dict[str, Any]:
    if value.lower() not in ("", "https"):
        raise ValueError("https or empty (no host name check)")
    return {"ssl_check_hostname": value.lower() == "https"}


def _to(field_name: str) -> Callable[[str, Mapping[str, str]], dict[str, Any]]:
    return lambda value, _context: {field_name: value}


@dataclass(frozen=True)
class ClusterKey:
    """How one Java client key becomes ClusterSettings fields."""

    fields: tuple[str, ...]
    convert: Callable[[str, Mapping[str, str]], dict[str, Any]]  # (value, the cluster's other keys) -> fields


#: Java client key -> ClusterSettings fields. Other per-cluster keys are kept verbatim in `properties`.
CLUSTER_KEYS: dict[str, ClusterKey] = {
    "bootstrap.servers": ClusterKey(("bootstrap_servers",), _to("bootstrap_servers")),
    "security.protocol": ClusterKey(("security_protocol",), _to("security_protocol")),
    "sasl.mechanism": ClusterKey(("sasl_mechanism",), _to("sasl_mechanism")),
    "sasl.jaas.config": ClusterKey(("sasl_username", "sasl_password"), _parse_jaas),
    "ssl.truststore.location": ClusterKey(
        ("ssl_cafile", "ssl_truststore_location"),
        _store_location("ssl_cafile", "ssl_truststore_location", "ssl.truststore.type"),
    ),
    "ssl.truststore.type": ClusterKey((), _store_type("ssl.truststore.type", "ssl.truststore.location")),
    "ssl.truststore.password": ClusterKey(("ssl_truststore_password",), _to("ssl_truststore_password")),
    "ssl.truststore.certificates": ClusterKey(
        ("ssl_truststore_certificates",), _to("ssl_truststore_certificates")
    ),
    "ssl.keystore.location": ClusterKey(
        ("ssl_certfile", "ssl_keystore_location"),
        _store_location("ssl_certfile", "ssl_keystore_location", "ssl.keystore.type"),
    ),
    "ssl.keystore.type": ClusterKey((), _store_type("ssl.keystore.type", "ssl.keystore.location")),
    "ssl.keystore.password": ClusterKey(("ssl_keystore_password",), _to("ssl_keystore_password")),
    "ssl.keystore.certificate.chain": ClusterKey(
        ("ssl_keystore_certificate_chain",), _to("ssl_keystore_certificate_chain")
    ),
    "ssl.keystore.key": ClusterKey(("ssl_keystore_key",), _to("ssl_keystore_key")),
    "ssl.key.password": ClusterKey(("ssl_password",), _to("ssl_password")),
    "ssl.endpoint.identification.algorithm": ClusterKey(("ssl_check_hostname",), _check_hostname),
}


def _is_client_key(key: str) -> bool:
    """Keys that Java copies from the top level into every cluster (MirrorClientConfig.CLIENT_CONFIG_DEF)."""
    return key in ("bootstrap.servers", "security.protocol") or key.startswith(("ssl.", "sasl."))


# --- Translation ----------------------------------------------------------------------------------

_ALIAS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
ALIAS_ALLOWED = "letters, digits, '_' and '-' (not starting with '-')"
_FLOW_KEY_ALLOWED = "<source>-><target>.<key>, such as A->B.enabled"


def translate(
    properties: Mapping[str, str], *, aliases: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> ConfigLayer:
    """Split mm2.properties keys into a :class:`ConfigLayer` (values are trimmed, as Kafka's ConfigDef does).

    ``aliases`` are the clusters known from other sources; a ``clusters`` key replaces them. Variables of
    the declared ``config.providers`` (``${file:path:key}``, ``${dir:path:file}``, ``${env:NAME}``) are
    replaced first, as Java does; ``env`` is what EnvVarConfigProvider reads (default: os.environ).
    """
    layer = ConfigLayer()
    values = {key: value.strip() for key, value in properties.items()}
    values = _resolve_variables(layer, values, os.environ if env is None else env)
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
        elif _is_client_key(key):
            top_client[key] = value
        else:
            _top_level_key(layer, key, value)
    _cluster_keys(layer, ("cluster_defaults",), "", top_client, top_client)
    for alias, keys in per_cluster.items():
        _cluster_keys(layer, ("clusters", alias), f"{alias}.", keys, {**top_client, **keys})
    return layer


# --- config.providers (Java's ConfigTransformer) ---------------------------------------------------

#: ``${provider:[path:]key}``, Java's ConfigTransformer.DEFAULT_PATTERN.
_VARIABLE = re.compile(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")
_PROVIDERS = {
    "org.apache.kafka.common.config.provider.FileConfigProvider": "file",
    "org.apache.kafka.common.config.provider.DirectoryConfigProvider": "directory",
    "org.apache.kafka.common.config.provider.EnvVarConfigProvider": "env",
}
_PROVIDERS_ALLOWED = ", ".join(f"{name} (in {cls.rpartition('.')[0]})" for cls, name in _PROVIDERS.items())


@dataclass(frozen=True)
class _Provider:
    kind: str  # "file", "directory" or "env"
    params: Mapping[str, str]


def _resolve_variables(
    layer: ConfigLayer, values: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """Replace the variables of declared config providers in every value; a key whose variable cannot be
    resolved is reported (without its value) and dropped. Undeclared providers are left as written."""
    providers = _config_providers(layer, values)
    if not providers:
        return dict(values)
    files: dict[str, dict[str, str]] = {}
    resolved: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("config.providers") or "${" not in value:
            resolved[key] = value
            continue
        failures: list[str] = []

        def lookup(match: re.Match[str], failures: list[str] = failures) -> str:
            provider = providers.get(match[1])
            if provider is None:
                return match[0]
            try:
                return _provider_value(provider, match[2] or "", match[3], env, files)
            except ValueError as exc:
                failures.append(f"cannot resolve {match[0]} ({exc})")
                return match[0]

        replaced = _VARIABLE.sub(lookup, value)
        if failures:
            layer.fail(key, None, "a value whose config-provider variables resolve", "; ".join(failures))
        else:
            resolved[key] = replaced.strip()
    return resolved


def _config_providers(layer: ConfigLayer, values: Mapping[str, str]) -> dict[str, _Provider]:
    providers: dict[str, _Provider] = {}
    for name in (n.strip() for n in values.get("config.providers", "").split(",")):
        if not name:
            continue
        class_key = f"config.providers.{name}.class"
        cls = values.get(class_key)
        if cls is None:
            layer.fail(class_key, None, _PROVIDERS_ALLOWED, "missing value")
        elif cls not in _PROVIDERS:
            layer.fail(class_key, cls, _PROVIDERS_ALLOWED, "unsupported config provider")
        else:
            prefix = f"config.providers.{name}.param."
            params = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
            providers[name] = _Provider(_PROVIDERS[cls], params)
    return providers


def _provider_value(
    provider: _Provider, path: str, key: str, env: Mapping[str, str], files: dict[str, dict[str, str]]
) -> str:
    if provider.kind == "env":
        pattern = provider.params.get("allowlist.pattern")
        if pattern is not None and re.fullmatch(pattern, key) is None:
            raise ValueError(f"{key} does not match the provider's allowlist.pattern")
        if key not in env:
            raise ValueError(f"environment variable {key} is not set")
        return env[key]
    if not path:
        raise ValueError("a path is required: ${provider:path:key}")
    target = Path(path) / key if provider.kind == "directory" else Path(path)
    allowed = [Path(p.strip()) for p in provider.params.get("allowed.paths", "").split(",") if p.strip()]
    if allowed and not any(target.resolve().is_relative_to(a.resolve()) for a in allowed):
        raise ValueError("the path is outside the provider's allowed.paths")
    if provider.kind == "directory":
        if "/" in key or key in ("", ".", ".."):
            raise ValueError("the key must be a file name in the directory")
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None
    if path not in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None
        entries, problems = parse_properties(text, source=path)
        if problems:
            raise ValueError(str(problems[0]))
        files[path] = {entry.key: entry.value for entry in entries}
    if key not in files[path]:
        raise ValueError(f"{path} has no key {key!r}")
    return files[path][key]


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


def closest_key_hint(key: str, known: Iterable[str]) -> str:
    """``did you mean 'x'?`` naming the known key closest to ``key`` (difflib), for unknown-key warnings."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else "no similar key is known"


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
