"""The settings model: ClusterSettings, FlowSettings, ServiceSettings and Settings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mirror.config.fields import (
    DEFAULT_REPLICATION_POLICY,
    Alias,
    Allowed,
    ClientProps,
    Count,
    HostPorts,
    Names,
    NonEmpty,
    NonNegative,
    PolicyClass,
    Regexes,
    ReplicationFactor,
    Seconds,
    lower_text,
    upper_text,
)
from mirror.config.problems import MASK, is_secret_key
from mirror.mm2.filters import DEFAULT_GROUPS, DEFAULT_GROUPS_EXCLUDE, DEFAULT_TOPICS, DEFAULT_TOPICS_EXCLUDE
from mirror.mm2.topic_configs import DEFAULT_CONFIG_PROPERTIES_EXCLUDE

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


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


def secrets_from_files(data: Any, fields: Iterable[str]) -> Any:
    """``<secret field>_file``: the secret is that file's content (without a trailing newline)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name in fields:
        path = data.get(f"{name}_file")
        if path is None:
            continue
        if data.get(name) is not None:
            raise _field_error(f"{name}_file", f"either {name} or {name}_file", "invalid value (both set)")
        try:
            text = Path(str(path)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise _field_error(
                f"{name}_file", "a readable file", f"cannot read {path!r} ({reason})"
            ) from None
        data[name] = text.removesuffix("\n").removesuffix("\r")
    return data


class ClusterSettings(_Model):
    """How to reach one Kafka cluster (mm2.properties: ``<alias>.<client key>``).

    TLS material: trust from ``ssl_truststore_certificates`` (inline PEM), else ``ssl_truststore_location``
    (a JKS or PKCS12 store), else ``ssl_cafile`` (PEM), else the system's CAs; the client certificate from
    ``ssl_keystore_key`` + ``ssl_keystore_certificate_chain`` (inline PEM), else ``ssl_keystore_location``
    (JKS or PKCS12), else ``ssl_certfile``/``ssl_keyfile`` (PEM). ``ssl_password`` is the key's password
    (Java's ``ssl.key.password``). Each secret field can be read from a file instead: ``<field>_file``.
    """

    alias: Alias
    bootstrap_servers: HostPorts
    security_protocol: Annotated[SecurityProtocol, BeforeValidator(upper_text)] = "PLAINTEXT"
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
    consumer: ClientProps = {}
    producer: ClientProps = {}
    admin: ClientProps = {}
    properties: ClientProps = {}

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        return secrets_from_files(data, SECRET_FILE_FIELDS)

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

    source: Alias
    target: Alias
    enabled: bool = False
    topics: Regexes = list(DEFAULT_TOPICS)
    topics_exclude: Regexes = list(DEFAULT_TOPICS_EXCLUDE)
    groups: Regexes = list(DEFAULT_GROUPS)
    groups_exclude: Regexes = list(DEFAULT_GROUPS_EXCLUDE)
    tasks_max: Count = 1
    replication_factor: ReplicationFactor = 2
    heartbeats_topic_replication_factor: ReplicationFactor = 3
    checkpoints_topic_replication_factor: ReplicationFactor = 3
    offset_syncs_topic_replication_factor: ReplicationFactor = 3
    offset_storage_replication_factor: ReplicationFactor = 3
    offset_storage_partitions: Count = 25
    offset_storage_topic: NonEmpty | None = None
    refresh_topics_enabled: bool = True
    refresh_topics_interval_seconds: Seconds = 600
    remote_topics_delete_enabled: bool = False
    remote_topics_delete_delay_seconds: Seconds = 86400
    refresh_groups_enabled: bool = True
    refresh_groups_interval_seconds: Seconds = 600
    emit_heartbeats_enabled: bool = True
    emit_heartbeats_interval_seconds: Seconds = 1
    emit_checkpoints_enabled: bool = True
    emit_checkpoints_interval_seconds: Seconds = 60
    sync_group_offsets_enabled: bool = False
    sync_group_offsets_interval_seconds: Seconds = 60
    sync_topic_configs_enabled: bool = True
    sync_topic_configs_interval_seconds: Seconds = 600
    sync_topic_acls_enabled: bool = True
    sync_topic_acls_interval_seconds: Seconds = 600
    emit_offset_syncs_enabled: bool = True
    offset_syncs_topic_location: Annotated[Literal["source", "target"], BeforeValidator(lower_text)] = (
        "source"
    )
    offset_lag_max: NonNegative = 100
    heartbeats_replication_enabled: bool = True
    replication_policy_class: PolicyClass = DEFAULT_REPLICATION_POLICY
    replication_policy_separator: NonEmpty = "."
    replication_policy_internal_topic_separator_enabled: bool = True
    config_properties_exclude: Regexes = list(DEFAULT_CONFIG_PROPERTIES_EXCLUDE)
    use_defaults_from: Annotated[Literal["source", "target"], BeforeValidator(lower_text)] = "target"
    consumer_poll_timeout_ms: NonNegative = 1000
    admin_timeout_ms: Count = 60000
    offset_flush_interval_ms: Count = 60000
    exactly_once_support: Annotated[
        Literal["disabled", "requested", "required"], BeforeValidator(lower_text)
    ] = "disabled"
    task_stuck_timeout_seconds: Seconds = 300
    throttle_bytes_per_second: NonNegative = 0
    #: What a record the target refuses for good does to its partition (mirror's own keys, per flow):
    #: ``halt`` it there, retried every backoff until the target takes it, or ``dead-letter``: the record
    #: goes to the flow's dead-letter topic on the target and the partition goes on.
    rejected_records_policy: Annotated[Literal["halt", "dead-letter"], BeforeValidator(lower_text)] = "halt"
    rejected_records_retry_backoff_ms: Count = 5000
    rejected_records_retry_backoff_max_ms: Count = 300000
    consumer: ClientProps = {}
    producer: ClientProps = {}

    @property
    def name(self) -> str:
        """``source->target``, the flow's key in mm2.properties and in ``Settings.flows``."""
        return f"{self.source}->{self.target}"

    @model_validator(mode="after")
    def _two_clusters(self) -> Self:
        if self.source == self.target:
            raise _field_error("target", "a cluster other than the source", "invalid value (same as source)")
        if self.rejected_records_retry_backoff_ms > self.rejected_records_retry_backoff_max_ms:
            raise _field_error(
                "rejected_records_retry_backoff_ms",
                f"at most the retry backoff maximum ({self.rejected_records_retry_backoff_max_ms})",
                f"invalid value '{self.rejected_records_retry_backoff_ms}'",
            )
        return self


class ServiceSettings(_Model):
    """mirror's own settings (mm2.properties: ``service.<key>``)."""

    http_host: NonEmpty = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    log_format: Annotated[Literal["auto", "console", "json"], BeforeValidator(lower_text)] = "auto"
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(upper_text)] = "INFO"
    group: NonEmpty = "mirror"
    clusters_served: Names | None = None
    #: The bearer token of the HTTP endpoints that change anything (pause, resume); None: they are off.
    control_token: SecretStr | None = None
    control_token_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, ("control_token",))


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
        """Only the values passed in: :mod:`mirror.config.sources` reads ``MIRROR_*`` (with ``env_prefix`` and
        ``env_nested_delimiter`` above), YAML and TOML itself, and :mod:`mirror.config.load` merges them.

        pydantic-settings' own sources do not fit (docs/configuration.md describes what ours do): their output
        is a plain dict, so an error could no longer name the variable or the file key the user wrote; its
        environment source is either case-sensitive for the whole name or lower-cases all of it (aliases and
        client keys keep their case here, sections and fields do not), decodes list fields as JSON only (so
        ``a,b`` and regexes such as ``[a-z].*`` fail), has no ``MIRROR_FLOWS__A__B__...`` form and no
        unknown-variable warnings; its YAML source fails on a document that is not a mapping without saying
        what it is, and both file sources refuse files that are not UTF-8 (read here as ISO-8859-1). Our
        sources also take the environment as an argument, and flows are resolved the MM2 way after merging."""
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


#: The model of each section of a ConfigLayer (and of a YAML/TOML document).
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "clusters": ClusterSettings,
    "cluster_defaults": ClusterSettings,
    "defaults": FlowSettings,
    "flows": FlowSettings,
    "service": ServiceSettings,
}
#: Fields a section's enclosing key already gives (``clusters.A`` is the alias); written anyway, they warn.
IMPLIED_FIELDS = {"clusters": ("alias",), "flows": ("source", "target"), "defaults": ("source", "target")}
