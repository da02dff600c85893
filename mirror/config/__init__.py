"""Settings of mirror: the model, the loader and a redacted dump.

:func:`load_settings` reads up to three sources, first wins: ``overrides`` (command-line ``--set`` lines, with
mm2.properties semantics), ``MIRROR_*`` environment variables, then the file (``.properties`` is Java's
mm2.properties, ``.yaml``/``.yml`` and ``.toml`` are documents in the models' own field names). Each source
becomes a :class:`~mirror.config.mm2_properties.ConfigLayer` whose values are validated where they
were written, so an error names the key the user typed. The layers are merged and resolved like Java
MM2 does it: every ordered pair of clusters is a flow, built from the field defaults, the target
cluster's worker keys, the top-level (``defaults``) keys and the flow's own keys, each overriding
the previous.
Bad input raises :class:`ConfigError` (never pydantic's ValidationError); questionable input (unknown
keys) becomes a warning.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mirror.config.mm2_properties import (
    ALIAS_ALLOWED,
    MASK,
    SECTIONS,
    TARGET_WORKER_KEYS,
    ConfigLayer,
    ConfigProblem,
    closest_key_hint,
    is_secret_key,
    java_key,
    read_properties,
    split_flow_name,
    translate,
)
from mirror.mm2.filters import (
    DEFAULT_CONFIG_PROPERTIES_EXCLUDE,
    DEFAULT_GROUPS,
    DEFAULT_GROUPS_EXCLUDE,
    DEFAULT_TOPICS,
    DEFAULT_TOPICS_EXCLUDE,
    java_regex,
    pattern_list,
)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

DEFAULT_REPLICATION_POLICY = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
IDENTITY_REPLICATION_POLICY = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"


class ConfigError(Exception):
    """Invalid configuration: ``key``, ``value``, ``allowed`` of the first problem; ``problems`` has all."""

    def __init__(self, key: str, value: object, allowed: str, *, problem: str = "invalid value") -> None:
        self.problems = [ConfigProblem.of(key, value, allowed, problem)]
        super().__init__(key)

    @classmethod
    def from_problems(cls, problems: Sequence[ConfigProblem]) -> ConfigError:
        """One error reporting every problem (there must be at least one)."""
        first = problems[0]
        error = cls(first.key, first.value, first.allowed, problem=first.problem)
        error.problems = list(problems)
        return error

    @property
    def key(self) -> str:
        return self.problems[0].key

    @property
    def value(self) -> str | None:
        return self.problems[0].value

    @property
    def allowed(self) -> str:
        return self.problems[0].allowed

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        return f"{len(self.problems)} configuration problems:\n" + "\n".join(f"- {p}" for p in self.problems)


# --- Field types -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """Field metadata: what the field accepts, in words, for error messages."""

    text: str


def _split_list(value: object) -> object:
    """A list, or a comma-separated string; empty elements are rejected (as Kafka 4.2+ does)."""
    if isinstance(value, str):
        value = value.split(",") if value.strip() else []
    if isinstance(value, list | tuple):
        items = [item.strip() if isinstance(item, str) else item for item in value]
        if any(item == "" for item in items):
            raise ValueError("empty list elements are not allowed")
        return items
    return value


def _java_regexes(patterns: list[str]) -> list[str]:
    """Each entry must be a Java regex that mirror.mm2.filters compiles (the entries are kept as written)."""
    for pattern in patterns:
        try:
            java_regex(pattern)
        except ValueError as exc:
            raise ValueError(f"{pattern!r}: {exc}") from None
    try:
        pattern_list(patterns)
    except ValueError as exc:
        raise ValueError(f"the entries cannot be joined with '|': {exc}") from None
    return patterns


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/,]+):(\d{1,5})")


def _host_ports(servers: list[str]) -> list[str]:
    if not servers:
        raise ValueError("at least one server is required")
    for server in servers:
        match = _HOST_PORT.fullmatch(server)
        if match is None or not 0 < int(match[1]) < 65536:
            raise ValueError(f"{server!r} is not host:port")
    return servers


def _replication_factor(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError("0 and values below -1 are not replication factors")
    return value


def _policy_class(value: str) -> str:
    if value not in (DEFAULT_REPLICATION_POLICY, IDENTITY_REPLICATION_POLICY):
        raise ValueError("other replication policies are not supported")
    return value


def _client_props(value: object) -> object:
    """Client property values may be written as numbers or booleans in YAML/TOML; Java wants strings."""
    if not isinstance(value, Mapping):
        return value
    return {str(key): _java_text(item) for key, item in value.items()}


def _java_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


_Alias = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"), Allowed(ALIAS_ALLOWED)]
_Regexes = Annotated[
    list[str],
    BeforeValidator(_split_list),
    AfterValidator(_java_regexes),
    Allowed("a comma-separated list of Java regular expressions"),
]
_Names = Annotated[list[str], BeforeValidator(_split_list), Allowed("a comma-separated list")]
_HostPorts = Annotated[
    list[str],
    BeforeValidator(_split_list),
    AfterValidator(_host_ports),
    Allowed("a comma-separated list of host:port"),
]
_ReplicationFactor = Annotated[
    int, AfterValidator(_replication_factor), Allowed("an integer >= 1, or -1 for the broker default")
]
_PolicyClass = Annotated[
    str,
    AfterValidator(_policy_class),
    Allowed(f"{DEFAULT_REPLICATION_POLICY} or {IDENTITY_REPLICATION_POLICY}"),
]
_ClientProps = Annotated[
    dict[str, str], BeforeValidator(_client_props), Allowed("a mapping of Java client keys to values")
]
_Count = Annotated[int, Field(ge=1)]
_NonNegative = Annotated[int, Field(ge=0)]
_Seconds = Annotated[float, Field(gt=0)]
_NonEmpty = Annotated[str, Field(min_length=1), Allowed("a non-empty string")]


# --- The model ---------------------------------------------------------------------------------------------


class _Model(BaseModel):
    """A frozen settings model whose repr hides the secret entries of its client-property dicts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if isinstance(value, dict):
                yield name, {key: MASK if is_secret_key(str(key)) else item for key, item in value.items()}
            else:
                yield name, value


_SASL_FIELDS = {
    "sasl_mechanism": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    "sasl_username": "a user name",
    "sasl_password": "a password",
}


#: Secret fields that may instead be read from a file (``<field>_file``: Kubernetes/Docker secret mounts).
SECRET_FILE_FIELDS = (
    "sasl_password",
    "ssl_password",
    "ssl_keystore_password",
    "ssl_truststore_password",
    "ssl_keystore_key",
)


class ClusterSettings(_Model):
    """How to reach one Kafka cluster (mm2.properties: ``<alias>.<client key>``).

    TLS material: trust from ``ssl_truststore_certificates`` (inline PEM), else ``ssl_truststore_location``
    (a JKS or PKCS12 store), else ``ssl_cafile`` (PEM), else the system's CAs; the client certificate from
    ``ssl_keystore_key`` + ``ssl_keystore_certificate_chain`` (inline PEM), else ``ssl_keystore_location``
    (JKS or PKCS12), else ``ssl_certfile``/``ssl_keyfile`` (PEM). ``ssl_password`` is the key's password
    (Java's ``ssl.key.password``). Each secret field can be read from a file instead: ``<field>_file``.
    """

    alias: _Alias
    bootstrap_servers: _HostPorts
    security_protocol: Annotated[SecurityProtocol, BeforeValidator(_upper)] = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    ssl_truststore_location: str | None = None
    ssl_truststore_password: SecretStr | None = None
    ssl_truststore_certificates: str | None = None
    ssl_keystore_location: str | None = None
    ssl_keystore_password: SecretStr | None = None
    ssl_keystore_certificate_chain: str | None = None
    ssl_keystore_key: SecretStr | None = None
    ssl_check_hostname: bool = True
    sasl_password_file: str | None = None
    ssl_password_file: str | None = None
    ssl_keystore_password_file: str | None = None
    ssl_truststore_password_file: str | None = None
    ssl_keystore_key_file: str | None = None
    consumer: _ClientProps = {}
    producer: _ClientProps = {}
    admin: _ClientProps = {}
    properties: _ClientProps = {}

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``<secret field>_file``: the secret is that file's content (without a trailing newline)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in SECRET_FILE_FIELDS:
            path = data.get(f"{name}_file")
            if path is None:
                continue
            if data.get(name) is not None:
                raise _field_error(
                    f"{name}_file", f"either {name} or {name}_file", "invalid value (both set)"
                )
            try:
                text = Path(str(path)).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise _field_error(
                    f"{name}_file", "a readable file", f"cannot read {path!r} ({reason})"
                ) from None
            data[name] = text.removesuffix("\n").removesuffix("\r")
        return data

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Self:
        if self.security_protocol.startswith("SASL_"):
            for name, allowed in _SASL_FIELDS.items():
                if getattr(self, name) is None:
                    raise _field_error(
                        name, allowed, f"missing value (required with {self.security_protocol})"
                    )
        return self


class FlowSettings(_Model):
    """One replication flow ``source->target`` (mm2.properties: top-level keys and ``A->B.<key>``)."""

    source: _Alias
    target: _Alias
    enabled: bool = False
    topics: _Regexes = list(DEFAULT_TOPICS)
    topics_exclude: _Regexes = list(DEFAULT_TOPICS_EXCLUDE)
    groups: _Regexes = list(DEFAULT_GROUPS)
    groups_exclude: _Regexes = list(DEFAULT_GROUPS_EXCLUDE)
    tasks_max: _Count = 1
    replication_factor: _ReplicationFactor = 2
    heartbeats_topic_replication_factor: _ReplicationFactor = 3
    checkpoints_topic_replication_factor: _ReplicationFactor = 3
    offset_syncs_topic_replication_factor: _ReplicationFactor = 3
    offset_storage_replication_factor: _ReplicationFactor = 3
    offset_storage_partitions: _Count = 25
    offset_storage_topic: _NonEmpty | None = None
    refresh_topics_enabled: bool = True
    refresh_topics_interval_seconds: _Seconds = 600
    refresh_groups_enabled: bool = True
    refresh_groups_interval_seconds: _Seconds = 600
    emit_heartbeats_enabled: bool = True
    emit_heartbeats_interval_seconds: _Seconds = 1
    emit_checkpoints_enabled: bool = True
    emit_checkpoints_interval_seconds: _Seconds = 60
    sync_group_offsets_enabled: bool = False
    sync_group_offsets_interval_seconds: _Seconds = 60
    sync_topic_configs_enabled: bool = True
    sync_topic_configs_interval_seconds: _Seconds = 600
    sync_topic_acls_enabled: bool = True
    sync_topic_acls_interval_seconds: _Seconds = 600
    emit_offset_syncs_enabled: bool = True
    offset_syncs_topic_location: Annotated[Literal["source", "target"], BeforeValidator(_lower)] = "source"
    offset_lag_max: _NonNegative = 100
    heartbeats_replication_enabled: bool = True
    replication_policy_class: _PolicyClass = DEFAULT_REPLICATION_POLICY
    replication_policy_separator: _NonEmpty = "."
    replication_policy_internal_topic_separator_enabled: bool = True
    config_properties_exclude: _Regexes = list(DEFAULT_CONFIG_PROPERTIES_EXCLUDE)
    use_defaults_from: Annotated[Literal["source", "target"], BeforeValidator(_lower)] = "target"
    consumer_poll_timeout_ms: _NonNegative = 1000
    admin_timeout_ms: _Count = 60000
    offset_flush_interval_ms: _Count = 60000
    exactly_once_support: Annotated[Literal["disabled", "requested", "required"], BeforeValidator(_lower)] = (
        "disabled"
    )
    consumer: _ClientProps = {}
    producer: _ClientProps = {}

    @property
    def name(self) -> str:
        """``source->target``, the flow's key in mm2.properties and in ``Settings.flows``."""
        return f"{self.source}->{self.target}"

    @model_validator(mode="after")
    def _two_clusters(self) -> Self:
        if self.source == self.target:
            raise _field_error("target", "a cluster other than the source", "invalid value (same as source)")
        return self


class ServiceSettings(_Model):
    """mirror's own settings (mm2.properties: ``service.<key>``)."""

    http_host: _NonEmpty = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    log_format: Annotated[Literal["auto", "console", "json"], BeforeValidator(_lower)] = "auto"
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = "INFO"
    group: _NonEmpty = "mirror"
    clusters_served: _Names | None = None


class Settings(BaseSettings):
    """Everything mirror needs; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix="MIRROR_", env_nested_delimiter="__", case_sensitive=True)

    clusters: Annotated[dict[str, ClusterSettings], Allowed("at least one cluster")]
    flows: dict[str, FlowSettings]
    service: ServiceSettings = ServiceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: load_settings reads ``MIRROR_*`` itself (with ``env_prefix`` and
        ``env_nested_delimiter`` above), because it takes the environment as an argument and must resolve
        flows the MM2 way."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, data: Any) -> Any:
        """Cluster aliases default to their keys, and every ordered pair of clusters has a flow."""
        if not isinstance(data, dict) or not isinstance(data.get("clusters"), dict):
            return data
        if not isinstance(data.get("flows", {}), dict):
            return data
        clusters = {
            alias: {"alias": alias, **fields} if isinstance(fields, dict) else fields
            for alias, fields in data["clusters"].items()
        }
        flows = dict(data.get("flows", {}))
        for source in clusters:
            for target in clusters:
                if source != target:
                    flows.setdefault(f"{source}->{target}", {"source": source, "target": target})
        return {**data, "clusters": clusters, "flows": flows}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.clusters:
            raise PydanticCustomError(
                "missing", "missing value", {"field": "clusters", "allowed": "at least one cluster"}
            )
        known = ", ".join(self.clusters)
        for alias, cluster in self.clusters.items():
            if cluster.alias != alias:
                raise _field_error(f"clusters.{alias}.alias", f"{alias!r}, its key", "invalid value")
        for name, flow in self.flows.items():
            unknown = [alias for alias in (flow.source, flow.target) if alias not in self.clusters]
            if unknown:
                raise _field_error(f"flows.{name}", known, f"unknown cluster {unknown[0]!r}")
            if flow.name != name:
                raise _field_error(f"flows.{name}", f"{flow.name!r}, from source and target", "invalid key")
        for alias in self.service.clusters_served or ():
            if alias not in self.clusters:
                raise _field_error("service.clusters_served", known, f"unknown cluster {alias!r}")
        return self

    @model_validator(mode="after")
    def _guarantees_hold(self) -> Self:
        """Refuse client overrides under which the delivery guarantees cannot hold, or that cannot apply.

        The replication producer of a flow takes the target cluster's ``producer.*`` then the flow's own;
        the replication consumer the source cluster's ``consumer.*`` then the flow's own."""
        for name, flow in self.flows.items():
            if not flow.enabled:
                continue
            for role, cluster, checks in (
                ("producer", flow.target, _PRODUCER_GUARANTEES),
                ("consumer", flow.source, _CONSUMER_SETTINGS),
            ):
                for key, (allowed, why) in checks.items():
                    where, value = f"flows.{name}.{role}.{key}", getattr(flow, role).get(key)
                    if value is None:
                        where, value = (
                            f"clusters.{cluster}.{role}.{key}",
                            getattr(self.clusters[cluster], role).get(key),
                        )
                    if value is not None and str(value).strip().lower() not in allowed:
                        raise _field_error(where, " or ".join(allowed), f"invalid value {value!r}: {why}")
        return self

    def active_flows(self) -> list[FlowSettings]:
        """Flows this node runs: enabled ones plus those emitting heartbeats (Java runs a herder for both),
        whose target is in ``service.clusters_served`` (all targets when unset)."""
        served = self.service.clusters_served
        return [
            flow
            for flow in self.flows.values()
            if (flow.enabled or flow.emit_heartbeats_enabled) and (served is None or flow.target in served)
        ]

    def replicating_flows(self) -> list[FlowSettings]:
        """The enabled flows among :meth:`active_flows`: those that replicate records."""
        return [flow for flow in self.active_flows() if flow.enabled]

    def cluster(self, alias: str) -> ClusterSettings:
        """The settings of one cluster; KeyError for an unknown alias."""
        if alias not in self.clusters:
            raise KeyError(f"unknown cluster {alias!r} (known: {', '.join(self.clusters)})")
        return self.clusters[alias]


#: Producer settings of the replication producer without which records could be lost or reordered:
#: key -> (accepted values, why).
_PRODUCER_GUARANTEES: dict[str, tuple[tuple[str, ...], str]] = {
    "acks": (
        ("all", "-1"),
        "mirror stores progress once the target acknowledged a record; with fewer acknowledgements a "
        "leader change can lose records already counted as copied",
    ),
    "enable.idempotence": (
        ("true",),
        "without idempotence a retried batch can be written twice or after the batches behind it, and a "
        "refused batch would not stop the ones behind it",
    ),
}
#: Replication consumer settings with a fixed set of meanings here.
_CONSUMER_SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "auto.offset.reset": (
        ("earliest", "latest"),
        "where a partition without stored progress starts; mirror reports records deleted ahead of its "
        "position itself",
    ),
    "isolation.level": (("read_committed", "read_uncommitted"), "how transactional source records are read"),
}


def _field_error(field: str, allowed: str, problem: str) -> PydanticCustomError:
    """A model-validator error about ``field`` (a dotted path below the validated model)."""
    return PydanticCustomError("mirror_config", problem, {"field": field, "allowed": allowed})


# --- Loading -----------------------------------------------------------------------------------------------


@dataclass
class LoadedSettings:
    """The result of :func:`load_settings`."""

    settings: Settings
    warnings: list[str]
    source_path: Path | None


def load_settings(
    config_path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Read, merge, resolve and validate the configuration (see the module docstring); ConfigError if bad."""
    environment = os.environ if env is None else env
    env_layer = _env_layer(environment)
    file_layer = (
        ConfigLayer() if config_path is None else _file_layer(config_path, _aliases([env_layer]), environment)
    )
    override_layer = translate(overrides or {}, aliases=_aliases([file_layer, env_layer]))
    layers = [file_layer, env_layer, override_layer]  # lowest precedence first
    aliases = _aliases(layers)
    problems = [problem for layer in layers for problem in _layer_problems(layer, aliases)]
    if problems:
        raise ConfigError.from_problems(problems)
    is_properties = config_path is not None and config_path.suffix.lower() == ".properties"
    settings = _validated(_resolve(layers, aliases), java_key if is_properties else ".".join)
    return LoadedSettings(settings, [w for layer in layers for w in layer.warnings], config_path)


def _aliases(layers: Iterable[ConfigLayer]) -> list[str]:
    """The cluster list: the latest one declared (``clusters=``, a document's keys) plus later additions."""
    aliases: list[str] = []
    for layer in layers:
        if layer.aliases is not None:
            aliases = list(layer.aliases)
        aliases += [alias for alias in layer.data["clusters"] if alias not in aliases]
    return aliases


def _file_layer(path: Path, aliases: Sequence[str], env: Mapping[str, str]) -> ConfigLayer:
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[str], ConfigLayer]] = {
        ".properties": lambda text: read_properties(text, source=str(path), aliases=aliases, env=env),
        ".yaml": lambda text: _document_layer(_parse_yaml(text, path)),
        ".yml": lambda text: _document_layer(_parse_yaml(text, path)),
        ".toml": lambda text: _document_layer(_parse_toml(text, path)),
    }
    if suffix not in readers:
        raise ConfigError(
            str(path), suffix, "a .properties, .yaml, .yml or .toml file", problem="unknown file type"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), None, "a readable file", problem=f"cannot read ({exc.strerror})"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # what java.util.Properties.load reads
    return readers[suffix](text)


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(where, None, "valid YAML", problem=f"cannot parse ({reason})") from None


def _parse_toml(text: str, path: Path) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))  # Python 3.11 has no TOMLDecodeError.lineno
        where = f"{path}:{line[1]}" if line else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(where, None, "valid TOML", problem=f"cannot parse ({reason})") from None


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "clusters": ClusterSettings,
    "cluster_defaults": ClusterSettings,
    "defaults": FlowSettings,
    "flows": FlowSettings,
    "service": ServiceSettings,
}
_IMPLIED_FIELDS = {"clusters": ("alias",), "flows": ("source", "target"), "defaults": ("source", "target")}


def _document_layer(document: object) -> ConfigLayer:
    """A YAML/TOML document: sections as in ConfigLayer.data, fields named as in the models."""
    layer = ConfigLayer()
    if document is None:
        return layer
    if not isinstance(document, Mapping):
        layer.fail(
            "(document)", type(document).__name__, f"a mapping with the sections {', '.join(SECTIONS)}"
        )
        return layer
    for section, content in document.items():
        if section not in SECTIONS:
            layer.warnings.append(
                f"unknown key {section!r} is ignored; {closest_key_hint(str(section), SECTIONS)}"
            )
        elif content is not None and not isinstance(content, Mapping):
            layer.fail(section, content, "a mapping")
        elif section in ("clusters", "flows"):
            _document_entries(layer, section, content or {})
        else:
            _document_fields(layer, (section,), content or {})
    return layer


def _document_entries(layer: ConfigLayer, section: str, entries: Mapping[Any, Any]) -> None:
    if section == "clusters":
        layer.aliases = [str(alias) for alias in entries]
    for name, fields in entries.items():
        path = (section, str(name))
        if section == "flows" and split_flow_name(str(name)) is None:
            layer.fail(f"flows.{name}", None, "<source>-><target>, such as A->B", "malformed flow key")
        elif fields is not None and not isinstance(fields, Mapping):
            layer.fail(".".join(path), fields, "a mapping")
        else:
            layer.set(path, {}, ".".join(path))
            _document_fields(layer, path, fields or {})


def _document_fields(layer: ConfigLayer, path: tuple[str, ...], fields: Mapping[Any, Any]) -> None:
    model = _SECTION_MODELS[path[0]]
    implied = _IMPLIED_FIELDS.get(path[0], ())
    for name, value in fields.items():
        key = ".".join((*path, str(name)))
        if name in implied:
            layer.warnings.append(f"{key!r} is ignored; it is implied by the enclosing key")
        elif name in model.model_fields:
            layer.set((*path, name), value, key)
        else:
            known = [".".join((*path, known)) for known in model.model_fields if known not in implied]
            layer.warnings.append(f"unknown key {key!r} is ignored; {closest_key_hint(key, known)}")


def _env_layer(env: Mapping[str, str]) -> ConfigLayer:
    """``MIRROR_CLUSTERS__<alias>__<FIELD>[__<client key>]``, ``MIRROR_FLOWS__<A->B or A__B>__<FIELD>...``,
    ``MIRROR_DEFAULTS__<FIELD>``, ``MIRROR_CLUSTER_DEFAULTS__<FIELD>``, ``MIRROR_SERVICE__<FIELD>``.

    Sections and fields are case-insensitive; aliases and client keys keep their case. List and mapping
    values may be JSON; lists may also be comma-separated.
    """
    layer = ConfigLayer()
    prefix = Settings.model_config.get("env_prefix", "")
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        parts = name.removeprefix(prefix).split(delimiter)
        path = _env_path(parts)
        if path is None:
            hint = closest_key_hint(name, _env_names_like(parts, prefix, delimiter))
            layer.warnings.append(f"unknown environment variable {name!r} is ignored; {hint}")
            continue
        layer.set(path, _env_value(path, value), name)
    return layer


def _env_path(parts: list[str]) -> tuple[str, ...] | None:
    """The ConfigLayer path named by the parts of an environment variable, or None."""
    section, *rest = parts
    section = section.lower()
    owner: tuple[str, ...] = ()
    if len(rest) >= 2 and (section == "clusters" or (section == "flows" and "->" in rest[0])):
        owner, rest = (rest[0],), rest[1:]
    elif section == "flows" and len(rest) >= 3:
        owner, rest = (f"{rest[0]}->{rest[1]}",), rest[2:]
    elif section not in ("cluster_defaults", "defaults", "service") or not rest:
        return None
    field, *inner = rest
    info = _SECTION_MODELS[section].model_fields.get(field.lower())
    if info is None or (inner and not _is_mapping_field(info)) or len(inner) > 1:
        return None
    return (section, *owner, field.lower(), *inner)


def _env_names_like(parts: list[str], prefix: str, delimiter: str) -> list[str]:
    """Valid variable names that differ from ``parts`` in the section or in the last (field) part."""
    section = parts[0].lower()
    if section not in _SECTION_MODELS:
        return [prefix + delimiter.join([known.upper(), *parts[1:]]) for known in SECTIONS]
    fields = _SECTION_MODELS[section].model_fields
    return [prefix + delimiter.join([*parts[:-1], field.upper()]) for field in fields]


def _is_mapping_field(info: FieldInfo) -> bool:
    return get_origin(info.annotation) is dict


def _is_container_field(info: FieldInfo) -> bool:
    annotation = info.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(option) in (list, dict) for option in options)


def _env_value(path: tuple[str, ...], value: str) -> Any:
    """JSON lists and mappings are decoded for list and mapping fields; anything else stays a string."""
    info = _SECTION_MODELS[path[0]].model_fields.get(path[-1])
    if info is None or not _is_container_field(info) or not value.lstrip().startswith(("[", "{")):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return value  # e.g. a regex starting with a character class
    return decoded if isinstance(decoded, list | dict) else value


# --- Validation --------------------------------------------------------------------------------------------


def _layer_problems(layer: ConfigLayer, aliases: Sequence[str]) -> list[ConfigProblem]:
    """Problems of one layer: its own, each value checked against its field, and flows of unknown clusters."""
    problems = list(layer.problems)
    for section, model in _SECTION_MODELS.items():
        owners = (
            layer.data[section].items() if section in ("clusters", "flows") else [("", layer.data[section])]
        )
        for owner, fields in owners:
            path = (section, owner) if owner else (section,)
            problems += _field_problems(layer, path, model, fields)
            if section == "clusters":
                problems += _worker_key_problems(layer, path, fields.get("properties", {}))
    for name in layer.data["flows"]:
        problems += _flow_cluster_problems(layer, name, aliases)
    return problems


def _field_problems(
    layer: ConfigLayer, path: tuple[str, ...], model: type[BaseModel], fields: dict[str, Any]
) -> list[ConfigProblem]:
    """Validate each value on its own, storing the validated value back into the layer."""
    problems = []
    for name, value in fields.items():
        try:
            fields[name] = _adapter(model, name).validate_python(value)
        except ValidationError as exc:
            info = model.model_fields[name]
            problems.append(
                ConfigProblem.of(layer.origin((*path, name)), value, _allowed(info, exc.errors()[0]))
            )
    return problems


def _worker_key_problems(
    layer: ConfigLayer, path: tuple[str, ...], properties: Mapping[str, Any]
) -> list[ConfigProblem]:
    """A target cluster's worker keys (``B.offset.flush.interval.ms``) must be valid for their flow field."""
    problems = []
    for key, name in TARGET_WORKER_KEYS.items():
        if key in properties:
            try:
                _adapter(FlowSettings, name).validate_python(properties[key])
            except ValidationError as exc:
                allowed = _allowed(FlowSettings.model_fields[name], exc.errors()[0])
                origin = layer.origin((*path, "properties", key))
                problems.append(ConfigProblem.of(origin, properties[key], allowed))
    return problems


def _flow_cluster_problems(layer: ConfigLayer, name: str, aliases: Sequence[str]) -> list[ConfigProblem]:
    known = ", ".join(aliases) or "(no clusters are defined)"
    origin = layer.origin(("flows", name))
    if (pair := split_flow_name(name)) is None:
        return [ConfigProblem.of(origin, None, "<source>-><target>, such as A->B", "malformed flow key")]
    source, target = pair
    if source == target:
        return [ConfigProblem.of(origin, name, "two different clusters", "invalid flow")]
    return [
        ConfigProblem.of(origin, alias, known, "unknown cluster")
        for alias in (source, target)
        if alias not in aliases
    ]


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """A validator for one field of ``model``, with its constraints."""
    info = model.model_fields[name]
    form: Any = Annotated[info.annotation, info]
    return TypeAdapter(form)


def _allowed(info: FieldInfo | None, error: ErrorDetails) -> str:
    """What a field accepts, in words, plus the validator's own explanation if it gave one."""
    ctx = error.get("ctx") or {}
    if "allowed" in ctx:
        return str(ctx["allowed"])
    described = _describe(info) if info is not None else "a valid value"
    if error["type"] == "value_error":
        return f"{described}; {ctx.get('error', error['msg'])}"
    return described


def _describe(info: FieldInfo) -> str:
    for item in info.metadata:
        if isinstance(item, Allowed):
            return item.text
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not NoneType)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(arg) for arg in get_args(annotation))
    names: dict[object, str] = {bool: "true or false", int: "an integer", float: "a number"}
    return names.get(annotation, "a string") + _bounds(info.metadata)


def _bounds(metadata: Sequence[Any]) -> str:
    low = next((f">= {item.ge}" for item in metadata if isinstance(item, Ge)), None)
    low = low or next((f"> {item.gt}" for item in metadata if isinstance(item, Gt)), None)
    high = next((item.le for item in metadata if isinstance(item, Le)), None)
    if low and high is not None:
        return f" from {low.removeprefix('>= ')} to {high}"
    return f" {low}" if low else ""


def _resolve(layers: Sequence[ConfigLayer], aliases: Sequence[str]) -> dict[str, Any]:
    """Merge the layers and build every cluster and every ordered pair of clusters, the way Java MM2 does."""
    merged: dict[str, Any] = {section: {} for section in SECTIONS}
    for layer in layers:
        merged = _deep_merge(merged, layer.data)
    clusters = {
        alias: _deep_merge(merged["cluster_defaults"], merged["clusters"].get(alias, {})) for alias in aliases
    }
    flows = {}
    for source in aliases:
        for target in aliases:
            if source == target:
                continue
            name = f"{source}->{target}"
            properties = clusters[target].get("properties", {})
            worker = {
                field: properties[key] for key, field in TARGET_WORKER_KEYS.items() if key in properties
            }
            flow = _deep_merge(_deep_merge(worker, merged["defaults"]), merged["flows"].get(name, {}))
            flows[name] = {**flow, "source": source, "target": target}
    return {"clusters": clusters, "flows": flows, "service": merged["service"]}


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _validated(resolved: dict[str, Any], namer: Callable[[Sequence[str]], str]) -> Settings:
    """The final, whole-model validation; errors are named with ``namer`` (mm2.properties or dotted keys)."""
    try:
        return Settings.model_validate(resolved)
    except ValidationError as exc:
        problems = [_problem(error, namer) for error in exc.errors()]
    # Not chained: a ValidationError's text shows input values, which may hold secrets.
    raise ConfigError.from_problems(problems)


def _problem(error: ErrorDetails, namer: Callable[[Sequence[str]], str]) -> ConfigProblem:
    loc = [str(part) for part in error["loc"]]
    ctx = error.get("ctx") or {}
    if "field" in ctx:
        loc += str(ctx["field"]).split(".", 3)  # section, name, role, then a client key (dots kept)
    info = _field_info(loc)
    if error["type"] == "missing":
        return ConfigProblem.of(namer(loc), None, _allowed(info, error), "missing value")
    if error["type"] == "mirror_config":
        return ConfigProblem(namer(loc), None, _allowed(info, error), error["msg"])
    return ConfigProblem.of(namer(loc), error["input"], _allowed(info, error))


def _field_info(loc: Sequence[str]) -> FieldInfo | None:
    """The model field at an error location such as ``("clusters", "A", "sasl_mechanism")``."""
    if loc and loc[0] in Settings.model_fields and len(loc) == 1:
        return Settings.model_fields[loc[0]]
    if len(loc) >= 3 and loc[0] in ("clusters", "flows"):
        return _SECTION_MODELS[loc[0]].model_fields.get(loc[2])
    if len(loc) >= 2 and loc[0] == "service":
        return ServiceSettings.model_fields.get(loc[1])
    return None


# --- Redaction ---------------------------------------------------------------------------------------------


def redacted(settings: Settings) -> dict[str, Any]:
    """A JSON-able dump of ``settings`` in which every secret value is replaced by ``"********"``."""
    dump: dict[str, Any] = _redact(settings.model_dump(mode="json"), "")
    return dump


def _redact(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {name: _redact(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, key) for item in value]
    return MASK if value is not None and is_secret_key(key) else value
