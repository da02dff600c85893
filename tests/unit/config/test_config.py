"""Tests of mirror.config: mm2.properties, YAML, TOML, environment and overrides; errors; redaction."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import BaseModel

from mirror.config import (
    DEFAULT_REPLICATION_POLICY,
    IDENTITY_REPLICATION_POLICY,
    ClusterSettings,
    ConfigError,
    FlowSettings,
    LoadedSettings,
    ServiceSettings,
    Settings,
    load_settings,
    redacted,
)
from mirror.config.routing import FLOW_KEYS, SERVICE_KEYS
from mirror.config.security import CLUSTER_KEYS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
PASSWORD = "An4lytics-Pa55"

REALISTIC_PROPERTIES = f"""\
# Three clusters; analytics needs SASL_SSL with SCRAM.
clusters = primary, backup, analytics
primary.bootstrap.servers = p1:9092, p2:9092
backup.bootstrap.servers = b1:9093
analytics.bootstrap.servers = an1:9094
analytics.security.protocol = SASL_SSL
analytics.sasl.mechanism = SCRAM-SHA-512
analytics.sasl.jaas.config = {SCRAM} required \\
    username="mm2" password="{PASSWORD}";
analytics.ssl.truststore.type = PEM
analytics.ssl.truststore.location = /etc/kafka/analytics-ca.pem
analytics.ssl.endpoint.identification.algorithm =
primary.consumer.max.poll.records = 500

# Connector keys for every flow
replication.factor = 3
tasks.max = 2
sync.group.offsets.enabled = true
emit.heartbeats.interval.seconds = 5
offset.storage.replication.factor = 1

primary->backup.enabled = true
primary->backup.topics = orders.*, payments
primary->backup.tasks.max = 8
primary->backup.producer.override.compression.type = zstd
primary->backup.producer.override.linger.ms = 50
primary->backup.consumer.fetch.max.bytes = 52428800

primary->analytics.enabled = true
primary->analytics.topics = clicks
primary->analytics.replication.policy.class = {IDENTITY_REPLICATION_POLICY}
primary->analytics.emit.heartbeats.enabled = false

# Worker keys of the flows that write to backup
backup.offset.flush.interval.ms = 10000
backup.exactly.once.source.support = enabled

# Java-only keys, accepted silently
key.converter = org.apache.kafka.connect.converters.ByteArrayConverter
dedicated.mode.enable.internal.rest = true
service.http.port = 9000
"""

REALISTIC_YAML = f"""\
clusters:
  primary:
    bootstrap_servers: [p1:9092, p2:9092]
    consumer: {{max.poll.records: 500}}
  backup:
    bootstrap_servers: b1:9093
    properties:
      offset.flush.interval.ms: 10000
      exactly.once.source.support: enabled
  analytics:
    bootstrap_servers: an1:9094
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    sasl_username: mm2
    sasl_password: {PASSWORD}
    ssl_cafile: /etc/kafka/analytics-ca.pem
    ssl_check_hostname: false
defaults:
  replication_factor: 3
  tasks_max: 2
  sync_group_offsets_enabled: true
  emit_heartbeats_interval_seconds: 5
  offset_storage_replication_factor: 1
flows:
  primary->backup:
    enabled: true
    topics: orders.*, payments
    tasks_max: 8
    producer: {{compression.type: zstd, linger.ms: 50}}
    consumer: {{fetch.max.bytes: 52428800}}
  primary->analytics:
    enabled: yes
    topics: [clicks]
    replication_policy_class: {IDENTITY_REPLICATION_POLICY}
    emit_heartbeats_enabled: false
service:
  http_port: 9000
"""

REALISTIC_TOML = f"""\
[clusters.primary]
bootstrap_servers = ["p1:9092", "p2:9092"]
consumer = {{ "max.poll.records" = 500 }}

[clusters.backup]
bootstrap_servers = "b1:9093"
properties = {{ "offset.flush.interval.ms" = 10000, "exactly.once.source.support" = "enabled" }}

[clusters.analytics]
bootstrap_servers = "an1:9094"
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "mm2"
sasl_password = "{PASSWORD}"
ssl_cafile = "/etc/kafka/analytics-ca.pem"
ssl_check_hostname = false

[defaults]
replication_factor = 3
tasks_max = 2
sync_group_offsets_enabled = true
emit_heartbeats_interval_seconds = 5
offset_storage_replication_factor = 1

[flows."primary->backup"]
enabled = true
topics = "orders.*, payments"
tasks_max = 8
producer = {{ "compression.type" = "zstd", "linger.ms" = 50 }}
consumer = {{ "fetch.max.bytes" = 52428800 }}

[flows."primary->analytics"]
enabled = true
topics = ["clicks"]
replication_policy_class = "{IDENTITY_REPLICATION_POLICY}"
emit_heartbeats_enabled = false

[service]
http_port = 9000
"""

MINIMAL = "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\n"


def write(tmp_path: Path, text: str, name: str = "mm2.properties") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path,
    text: str = MINIMAL,
    name: str = "mm2.properties",
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LoadedSettings:
    return load_settings(write(tmp_path, text, name), env=env or {}, overrides=overrides)


def config_error(tmp_path: Path, text: str, name: str = "mm2.properties", **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, name, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- A realistic configuration, in the three formats -------------------------------------------------------


def test_realistic_mm2_properties(tmp_path: Path) -> None:
    """A Java mm2.properties with three clusters resolves to the values Java MM2 would use."""
    loaded = load(tmp_path, REALISTIC_PROPERTIES)
    settings = loaded.settings
    assert loaded.warnings == []
    assert loaded.source_path == tmp_path / "mm2.properties"
    assert list(settings.clusters) == ["primary", "backup", "analytics"]
    assert list(settings.flows) == [
        "primary->backup",
        "primary->analytics",
        "backup->primary",
        "backup->analytics",
        "analytics->primary",
        "analytics->backup",
    ]

    analytics = settings.cluster("analytics")
    assert analytics.bootstrap_servers == ["an1:9094"]
    assert analytics.security_protocol == "SASL_SSL"
    assert analytics.sasl_mechanism == "SCRAM-SHA-512"
    assert analytics.sasl_username == "mm2"
    assert analytics.sasl_password is not None and analytics.sasl_password.get_secret_value() == PASSWORD
    assert analytics.ssl_cafile == "/etc/kafka/analytics-ca.pem"
    assert analytics.ssl_check_hostname is False
    assert settings.cluster("primary").consumer == {"max.poll.records": "500"}
    assert settings.cluster("primary").security_protocol == "PLAINTEXT"
    assert settings.cluster("backup").properties == {
        "offset.flush.interval.ms": "10000",
        "exactly.once.source.support": "enabled",
    }

    to_backup = settings.flows["primary->backup"]
    assert to_backup.name == "primary->backup"
    assert (to_backup.enabled, to_backup.tasks_max, to_backup.replication_factor) == (True, 8, 3)
    assert to_backup.topics == ["orders.*", "payments"]
    assert to_backup.topics_exclude == ["mm2.*\\.internal", ".*\\.replica", "__.*"]
    assert to_backup.producer == {"compression.type": "zstd", "linger.ms": "50"}
    assert to_backup.consumer == {"fetch.max.bytes": "52428800"}
    assert to_backup.offset_flush_interval_ms == 10000
    assert to_backup.sync_group_offsets_enabled is True
    assert to_backup.emit_heartbeats_interval_seconds == 5
    assert to_backup.offset_storage_replication_factor == 1
    assert to_backup.replication_policy_class == DEFAULT_REPLICATION_POLICY

    to_analytics = settings.flows["primary->analytics"]
    assert to_analytics.enabled and to_analytics.topics == ["clicks"]
    assert to_analytics.replication_policy_class == IDENTITY_REPLICATION_POLICY
    assert to_analytics.emit_heartbeats_enabled is False
    assert (to_analytics.tasks_max, to_analytics.offset_flush_interval_ms) == (2, 60000)
    assert settings.flows["analytics->backup"].offset_flush_interval_ms == 10000
    assert settings.flows["backup->primary"].enabled is False
    assert settings.flows["backup->primary"].producer == {}
    assert settings.service.http_port == 9000


@pytest.mark.parametrize(("name", "text"), [("mirror.yaml", REALISTIC_YAML), ("mirror.toml", REALISTIC_TOML)])
def test_yaml_and_toml_equal_the_properties_file(tmp_path: Path, name: str, text: str) -> None:
    """The YAML and TOML forms of the realistic configuration give exactly the same Settings."""
    expected = load(tmp_path, REALISTIC_PROPERTIES).settings
    loaded = load(tmp_path, text, name)
    assert loaded.warnings == []
    assert loaded.settings.model_dump() == expected.model_dump()


def test_yml_extension_and_cluster_defaults(tmp_path: Path) -> None:
    """`.yml` works too; `cluster_defaults` applies to every cluster, as top-level client keys do."""
    text = """
cluster_defaults:
  security_protocol: SSL
  ssl_cafile: /ca.pem
clusters:
  A: {bootstrap_servers: "a:1"}
  B: {bootstrap_servers: "b:1", security_protocol: PLAINTEXT}
"""
    settings = load(tmp_path, text, "mirror.yml").settings
    assert settings.cluster("A").security_protocol == "SSL"
    assert settings.cluster("A").ssl_cafile == "/ca.pem"
    assert settings.cluster("B").security_protocol == "PLAINTEXT"


def test_top_level_client_keys_fill_gaps_only(tmp_path: Path) -> None:
    """Global security.protocol/ssl.* are lowest-priority defaults for every cluster."""
    text = MINIMAL + "security.protocol = SSL\nB.security.protocol = PLAINTEXT\nssl.protocol = TLSv1.3\n"
    settings = load(tmp_path, text).settings
    assert settings.cluster("A").security_protocol == "SSL"
    assert settings.cluster("B").security_protocol == "PLAINTEXT"
    assert settings.cluster("B").properties == {"ssl.protocol": "TLSv1.3"}


def test_worker_keys_precedence(tmp_path: Path) -> None:
    """Offset-storage keys: field default < target cluster < top level (as Java) < per flow."""
    text = MINIMAL + (
        "B.offset.storage.topic = from-cluster\n"
        "A.offset.storage.partitions = 7\n"
        "offset.storage.partitions = 9\n"
        "B->A.offset.storage.partitions = 11\n"
        "A->B.offset.flush.interval.ms = 5\n"
        "B.offset.flush.interval.ms = 6\n"
    )
    flows = load(tmp_path, text).settings.flows
    assert flows["A->B"].offset_storage_topic == "from-cluster"
    assert flows["B->A"].offset_storage_topic is None
    assert flows["A->B"].offset_storage_partitions == 9
    assert flows["B->A"].offset_storage_partitions == 11
    assert flows["A->B"].offset_flush_interval_ms == 5


def test_flows_only_in_defaults_and_empty_filters(tmp_path: Path) -> None:
    """A top-level `enabled=true` enables every flow; an empty list matches nothing (as Java)."""
    flows = load(tmp_path, MINIMAL + "enabled = true\ngroups =\n").settings.flows
    assert all(flow.enabled for flow in flows.values())
    assert flows["A->B"].groups == []


def test_java_regexes_are_kept_as_written(tmp_path: Path) -> None:
    """Java-only regex syntax is validated but kept, for mirror.mm2.filters to compile."""
    text = MINIMAL + "topics = \\\\Qa.b\\\\E, (?i)orders.*, \\\\p{Alpha}+\n"
    assert load(tmp_path, text).settings.flows["A->B"].topics == ["\\Qa.b\\E", "(?i)orders.*", "\\p{Alpha}+"]


def test_case_insensitive_enums(tmp_path: Path) -> None:
    """Like Java, security.protocol and exactly.once.support accept any case."""
    text = MINIMAL + "A.security.protocol = ssl\nA->B.exactly.once.support = REQUESTED\n"
    settings = load(tmp_path, text).settings
    assert settings.cluster("A").security_protocol == "SSL"
    assert settings.flows["A->B"].exactly_once_support == "requested"


# --- Environment and overrides -----------------------------------------------------------------------------


def test_env_overrides_file(tmp_path: Path) -> None:
    """MIRROR_* variables beat the file, deep-merged, and keep the case of aliases and client keys."""
    env = {
        "MIRROR_CLUSTERS__B__SECURITY_PROTOCOL": "SSL",
        "MIRROR_CLUSTERS__B__CONSUMER__max.poll.records": "7",
        "MIRROR_FLOWS__A__B__TASKS_MAX": "4",
        "MIRROR_FLOWS__B->A__TOPICS": '["x", "y"]',
        "MIRROR_DEFAULTS__TOPICS_EXCLUDE": "[a-z]+, tmp.*",
        "MIRROR_SERVICE__HTTP_PORT": "9100",
        "MIRROR_SERVICE__CLUSTERS_SERVED": "B",
        "OTHER": "ignored",
    }
    loaded = load(tmp_path, env=env)
    settings = loaded.settings
    assert loaded.warnings == []
    assert settings.cluster("B").security_protocol == "SSL"
    assert settings.cluster("B").bootstrap_servers == ["b:9092"]
    assert settings.cluster("B").consumer == {"max.poll.records": "7"}
    assert settings.flows["A->B"].tasks_max == 4
    assert settings.flows["B->A"].topics == ["x", "y"]
    assert settings.flows["A->B"].topics_exclude == ["[a-z]+", "tmp.*"]
    assert settings.service.http_port == 9100
    assert settings.service.clusters_served == ["B"]


def test_env_alone_defines_clusters() -> None:
    """Without a file the environment can define the whole configuration."""
    env = {
        "MIRROR_CLUSTERS__east__BOOTSTRAP_SERVERS": "e:1",
        "MIRROR_CLUSTERS__west__BOOTSTRAP_SERVERS": "w:1",
        "MIRROR_FLOWS__east->west__ENABLED": "true",
    }
    settings = load_settings(None, env=env).settings
    assert list(settings.clusters) == ["east", "west"]
    assert settings.replicating_flows() == [settings.flows["east->west"]]


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With env=None, os.environ is read."""
    monkeypatch.setenv("MIRROR_SERVICE__LOG_LEVEL", "debug")
    assert load_settings(write(tmp_path, MINIMAL)).settings.service.log_level == "DEBUG"


def test_unknown_env_variable_warns(tmp_path: Path) -> None:
    """A MIRROR_* variable that names no field is reported."""
    loaded = load(tmp_path, env={"MIRROR_SERVICES__HTTP_PORT": "1", "MIRROR_CLUSTERS__A__BOOTSTRAP": "x"})
    assert loaded.warnings == [
        "unknown environment variable 'MIRROR_SERVICES__HTTP_PORT' is ignored; "
        "did you mean 'MIRROR_SERVICE__HTTP_PORT'?",
        "unknown environment variable 'MIRROR_CLUSTERS__A__BOOTSTRAP' is ignored; "
        "did you mean 'MIRROR_CLUSTERS__A__BOOTSTRAP_SERVERS'?",
    ]


def test_overrides_beat_env_and_file(tmp_path: Path) -> None:
    """Overrides (mm2.properties lines from the command line) beat env and file."""
    overrides = {
        "A->B.topics": "x,y",
        "A.bootstrap.servers": "a2:9092",
        "tasks.max": "4",
        "service.http.port": "9000",
        "B.consumer.max.poll.records": "9",
    }
    env = {"MIRROR_SERVICE__HTTP_PORT": "9100", "MIRROR_CLUSTERS__A__BOOTSTRAP_SERVERS": "a1:9092"}
    settings = load(tmp_path, MINIMAL + "A->B.topics = z\n", env=env, overrides=overrides).settings
    assert settings.flows["A->B"].topics == ["x", "y"]
    assert settings.cluster("A").bootstrap_servers == ["a2:9092"]
    assert settings.flows["B->A"].tasks_max == 4
    assert settings.service.http_port == 9000
    assert settings.cluster("B").consumer == {"max.poll.records": "9"}


def test_specific_keys_beat_general_ones_across_sources(tmp_path: Path) -> None:
    """An override line behaves like a line added to mm2.properties: a per-flow key still beats it."""
    settings = load(tmp_path, MINIMAL + "A->B.tasks.max = 2\n", overrides={"tasks.max": "4"}).settings
    assert settings.flows["A->B"].tasks_max == 2
    assert settings.flows["B->A"].tasks_max == 4


def test_overrides_can_replace_the_cluster_list(tmp_path: Path) -> None:
    """`clusters=` in the overrides replaces the file's list."""
    text = MINIMAL + "C.bootstrap.servers = c:1\nclusters = A, B, C\n"
    settings = load(tmp_path, text, overrides={"clusters": "A, C"}).settings
    assert list(settings.clusters) == ["A", "C"]
    assert list(settings.flows) == ["A->C", "C->A"]


# --- Flows this node runs ----------------------------------------------------------------------------------


def test_active_and_replicating_flows(tmp_path: Path) -> None:
    """Heartbeat-only flows are active; only enabled ones replicate; clusters_served filters targets."""
    text = MINIMAL.replace("clusters = A, B", "clusters = A, B, C") + (
        "C.bootstrap.servers = c:1\nA->B.enabled = true\nC->A.enabled = true\n"
        "B->C.emit.heartbeats.enabled = false\n"
    )
    settings = load(tmp_path, text).settings
    assert [flow.name for flow in settings.active_flows()] == ["A->B", "A->C", "B->A", "C->A", "C->B"]
    assert [flow.name for flow in settings.replicating_flows()] == ["A->B", "C->A"]
    served = load(tmp_path, text, overrides={"service.clusters.served": "A"}).settings
    assert [flow.name for flow in served.active_flows()] == ["B->A", "C->A"]
    assert [flow.name for flow in served.replicating_flows()] == ["C->A"]


def test_cluster_lookup(tmp_path: Path) -> None:
    """Settings.cluster returns a cluster or raises KeyError naming the known ones."""
    settings = load(tmp_path).settings
    assert settings.cluster("A").alias == "A"
    with pytest.raises(KeyError, match="unknown cluster 'Z' \\(known: A, B\\)"):
        settings.cluster("Z")


def test_settings_built_directly_get_every_pair() -> None:
    """Constructing Settings directly also yields one flow per ordered pair, aliases taken from keys."""
    settings = Settings(
        clusters={"A": {"bootstrap_servers": "a:1"}, "B": {"bootstrap_servers": ["b:1"]}},
        flows={"A->B": {"source": "A", "target": "B", "enabled": True}},
    )
    assert settings.flows["A->B"].enabled and not settings.flows["B->A"].enabled
    assert settings.cluster("B").alias == "B"


def test_models_are_frozen() -> None:
    """Cluster, flow and service settings cannot be changed after loading."""
    flow = FlowSettings(source="A", target="B")
    with pytest.raises(ValueError, match="frozen"):
        flow.tasks_max = 3  # type: ignore[misc]


# --- Bad input ---------------------------------------------------------------------------------------------

BAD_PROPERTIES = [
    ("tasks.max = abc", "tasks.max: invalid value 'abc' (allowed: an integer >= 1)"),
    ("A->B.tasks.max = 0", "A->B.tasks.max: invalid value '0' (allowed: an integer >= 1)"),
    (
        "A.security.protocol = TLS",
        "A.security.protocol: invalid value 'TLS' (allowed: one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)",
    ),
    ("A->C.enabled = true", "A->C.enabled: unknown cluster 'C' (allowed: A, B)"),
    ("A->A.enabled = true", "A->A.enabled: invalid flow 'A->A' (allowed: two different clusters)"),
    (
        "A->.enabled = true",
        "A->.enabled: malformed flow key (allowed: <source>-><target>.<key>, such as A->B.enabled)",
    ),
    ("A->B = true", "A->B: malformed flow key"),
    (
        "topics = a(b",
        "topics: invalid value 'a(b' (allowed: a comma-separated list of Java regular expressions; 'a(b'",
    ),
    (
        "groups.exclude = \\\\p{L}+",
        "groups.exclude: invalid value '\\p{L}+' (allowed: a comma-separated list of Java",
    ),
    (
        "topics = a,,b",
        "topics: invalid value 'a,,b' (allowed: a comma-separated list of Java regular expressions; "
        "empty list elements are not allowed)",
    ),
    ("topics = a,b,", "empty list elements are not allowed"),
    (
        "replication.policy.class = com.example.MyPolicy",
        "replication.policy.class: invalid value 'com.example.MyPolicy' "
        f"(allowed: {DEFAULT_REPLICATION_POLICY} or {IDENTITY_REPLICATION_POLICY}; "
        "other replication policies are not supported)",
    ),
    (
        "replication.factor = 0",
        "replication.factor: invalid value '0' (allowed: an integer >= 1, or -1 for the",
    ),
    (
        "service.http.port = 70000",
        "service.http.port: invalid value '70000' (allowed: an integer from 0 to 65535)",
    ),
    (
        "service.log.level = LOUD",
        "service.log.level: invalid value 'LOUD' (allowed: one of DEBUG, INFO, WARNING, ERROR)",
    ),
    (
        "emit.heartbeats.interval.seconds = -1",
        "emit.heartbeats.interval.seconds: invalid value '-1' (allowed: a number > 0)",
    ),
    (
        "refresh.topics.enabled = maybe",
        "refresh.topics.enabled: invalid value 'maybe' (allowed: true or false)",
    ),
    (
        "A->B.offset-syncs.topic.location = middle",
        "A->B.offset-syncs.topic.location: invalid value 'middle' (allowed: one of source, target)",
    ),
    (
        "A->B.exactly.once.support = always",
        "A->B.exactly.once.support: invalid value 'always' (allowed: one of disabled, requested, required)",
    ),
    (
        "B.offset.flush.interval.ms = soon",
        "B.offset.flush.interval.ms: invalid value 'soon' (allowed: an integer >= 1)",
    ),
    (
        "A.bootstrap.servers = localhost",
        "A.bootstrap.servers: invalid value 'localhost' "
        "(allowed: a comma-separated list of host:port; 'localhost' is not host:port)",
    ),
    ("A.bootstrap.servers = a:99999", "'a:99999' is not host:port"),
    (
        "A.bootstrap.servers =",
        "A.bootstrap.servers: invalid value '' "
        "(allowed: a comma-separated list of host:port; at least one server is required)",
    ),
    (
        "A.ssl.endpoint.identification.algorithm = sometimes",
        "A.ssl.endpoint.identification.algorithm: invalid value 'sometimes' (allowed: https or empty",
    ),
    (
        "A.security.protocol = SASL_SSL",
        "A.sasl.mechanism: missing value (required with SASL_SSL) "
        "(allowed: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
    ),
    (
        "A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = PLAIN",
        "A.sasl.jaas.config: missing value (required with SASL_PLAINTEXT) (allowed: a user name)",
    ),
    (
        "A.sasl.mechanism = GSSAPI",
        "A.sasl.mechanism: invalid value 'GSSAPI' (allowed: one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
    ),
    (
        "A.ssl.keystore.location = /client.jceks\nA.ssl.keystore.type = JCEKS",
        "A.ssl.keystore.type: invalid value 'JCEKS' (allowed: JKS, PKCS12 or PEM; JCEKS stores cannot be "
        "read here: convert it to PKCS12 with keytool -importkeystore -srckeystore /client.jceks",
    ),
    ("offset.lag.max = -5", "offset.lag.max: invalid value '-5' (allowed: an integer >= 0)"),
    (
        "replication.policy.separator =",
        "replication.policy.separator: invalid value '' (allowed: a non-empty string)",
    ),
    ("service.clusters.served = A, Z", "service.clusters.served: unknown cluster 'Z' (allowed: A, B)"),
]


@pytest.mark.parametrize(("line", "message"), BAD_PROPERTIES, ids=[line for line, _ in BAD_PROPERTIES])
def test_bad_properties(tmp_path: Path, line: str, message: str) -> None:
    """Each bad line raises ConfigError naming the key as written, the value and what is allowed."""
    error = config_error(tmp_path, MINIMAL + line + "\n")
    assert message in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A.bootstrap.servers = a:1\n", "clusters: missing value (allowed: at least one cluster)"),
        (
            "clusters =\n",
            "clusters: missing value (allowed: a comma-separated list of distinct cluster aliases)",
        ),
        (
            "clusters = A, A\nA.bootstrap.servers = a:1\n",
            "clusters: invalid value 'A, A' (allowed: a comma-separated "
            "list of distinct cluster aliases (duplicates are rejected, as in Kafka 4.2+))",
        ),
        ("clusters = A, ,B\n", "clusters: invalid value 'A, ,B'"),
        (
            "clusters = A, b c\n",
            "clusters: invalid value 'A, b c' (allowed: a comma-separated list of distinct cluster "
            "aliases, made of letters, digits, '_' and '-' (not starting with '-'))",
        ),
        (
            "clusters = A, B\nA.bootstrap.servers = a:1\n",
            "B.bootstrap.servers: missing value (allowed: a comma-separated list of host:port)",
        ),
        (
            "clusters = A\nA.bootstrap.servers = a:1\nx = \\u00zz\n",
            "mm2.properties:3: malformed \\uxxxx escape",
        ),
    ],
)
def test_bad_cluster_lists_and_syntax(tmp_path: Path, text: str, message: str) -> None:
    """Missing, empty, duplicated or malformed cluster lists, missing bootstraps and syntax errors."""
    assert message in str(config_error(tmp_path, text))


def test_error_attributes_and_several_problems(tmp_path: Path) -> None:
    """ConfigError exposes key/value/allowed of the first problem, and str() lists all of them."""
    error = config_error(tmp_path, MINIMAL + "tasks.max = abc\nA->B.replication.factor = -7\n")
    assert (error.key, error.value, error.allowed) == ("tasks.max", "abc", "an integer >= 1")
    assert [problem.key for problem in error.problems] == ["tasks.max", "A->B.replication.factor"]
    assert str(error).splitlines() == [
        "2 configuration problems:",
        "- tasks.max: invalid value 'abc' (allowed: an integer >= 1)",
        "- A->B.replication.factor: invalid value '-7' (allowed: an integer >= 1, or -1 for the broker "
        "default; 0 and values below -1 are not replication factors)",
    ]


def test_error_can_be_raised_by_other_code() -> None:
    """ConfigError(key, value, allowed) is usable directly, e.g. for command-line flags."""
    assert (
        str(ConfigError("--set", "oops", "KEY=VALUE")) == "--set: invalid value 'oops' (allowed: KEY=VALUE)"
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "mirror.yaml",
            "clusters:\n  A: {bootstrap_servers: 'a:1'}\nflows:\n  A->B: {tasks_max: abc}\n",
            "flows.A->B: unknown cluster 'B' (allowed: A)",
        ),
        (
            "mirror.yaml",
            "clusters:\n  A: {bootstrap_servers: 'a:1'}\n  B: {bootstrap_servers: 'b:1'}\n"
            "flows:\n  A->B: {tasks_max: abc}\n",
            "flows.A->B.tasks_max: invalid value 'abc' (allowed: an integer >= 1)",
        ),
        (
            "mirror.yaml",
            "clusters:\n  A: {bootstrap_servers: 'a:1'}\n  B: {bootstrap_servers: 'b:1'}\n"
            "flows:\n  A-B: {enabled: true}\n",
            "flows.A-B: malformed flow key (allowed: <source>-><target>, such as A->B)",
        ),
        (
            "mirror.yaml",
            "clusters:\n  A: {bootstrap_servers: 'a:1', security_protocol: SASL_SSL, "
            "sasl_mechanism: PLAIN}\n",
            "clusters.A.sasl_username: missing value (required with SASL_SSL) (allowed: a user name)",
        ),
        (
            "mirror.yaml",
            "clusters:\n  A: {}\n",
            "clusters.A.bootstrap_servers: missing value (allowed: a comma-separated",
        ),
        ("mirror.yaml", "clusters: [A, B]\n", "clusters: invalid value '['A', 'B']' (allowed: a mapping)"),
        (
            "mirror.yaml",
            "- just\n- a list\n",
            "(document): invalid value 'list' (allowed: a mapping with the sections",
        ),
        ("mirror.yaml", "clusters:\n  A: {bootstrap_servers: 'a:1'\n", "mirror.yaml:3: cannot parse"),
        ("mirror.toml", "[clusters.A]\nbootstrap_servers = \n", "mirror.toml:2: cannot parse"),
        (
            "mirror.toml",
            "[defaults]\ntopics = ['a', '']\n[clusters.A]\nbootstrap_servers='a:1'\n",
            "defaults.topics: invalid value '['a', '']' (allowed: a comma-separated list of Java regular "
            "expressions; empty list elements are not allowed)",
        ),
        (
            "mirror.ini",
            "x",
            "mirror.ini: unknown file type '.ini' (allowed: a .properties, .yaml, .yml or .toml file)",
        ),
    ],
)
def test_bad_documents(tmp_path: Path, name: str, text: str, message: str) -> None:
    """YAML/TOML errors name the dotted key, or the file and line for syntax errors."""
    assert message in str(config_error(tmp_path, text, name))


def test_missing_file(tmp_path: Path) -> None:
    """A config file that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.properties", env={})
    assert (
        str(info.value) == f"{tmp_path / 'nope.properties'}: cannot read (No such file or directory) "
        "(allowed: a readable file)"
    )


def test_bad_env_and_override_values_name_their_key(tmp_path: Path) -> None:
    """Errors in environment variables and overrides name the variable or the override key."""
    error = config_error(
        tmp_path, MINIMAL, env={"MIRROR_SERVICE__HTTP_PORT": "abc"}, overrides={"A->B.tasks.max": "-3"}
    )
    assert [str(problem) for problem in error.problems] == [
        "MIRROR_SERVICE__HTTP_PORT: invalid value 'abc' (allowed: an integer from 0 to 65535)",
        "A->B.tasks.max: invalid value '-3' (allowed: an integer >= 1)",
    ]


def test_unknown_document_keys_warn(tmp_path: Path) -> None:
    """Unknown YAML keys are warnings naming the closest known key."""
    text = (
        "clusterz: {}\nclusters:\n  A: {bootstrap_servers: 'a:1', bootstrap_server: x}\n"
        "defaults: {tasks_mx: 2}\n"
    )
    assert load(tmp_path, text, "mirror.yaml").warnings == [
        "unknown key 'clusterz' is ignored; did you mean 'clusters'?",
        "unknown key 'clusters.A.bootstrap_server' is ignored; did you mean 'clusters.A.bootstrap_servers'?",
        "unknown key 'defaults.tasks_mx' is ignored; did you mean 'defaults.tasks_max'?",
    ]


def test_settings_validation_errors_are_never_raw_pydantic(tmp_path: Path) -> None:
    """Whatever is wrong, load_settings raises ConfigError only."""
    for text in ("clusters = A\n", "clusters = A\nA.bootstrap.servers = [::1]:x\n", "clusters = 1\n"):
        with pytest.raises(ConfigError):
            load(tmp_path, text)


# --- Secrets -----------------------------------------------------------------------------------------------


def test_redacted_hides_every_secret(tmp_path: Path) -> None:
    """redacted() is JSON-able and replaces passwords, JAAS lines and secret client keys by ********."""
    text = REALISTIC_PROPERTIES + (
        f'primary.consumer.sasl.jaas.config = {SCRAM} required username="u" password="{PASSWORD}";\n'
        f"primary->backup.producer.override.ssl.key.password = {PASSWORD}\n"
        f"backup.ssl.keystore.password = {PASSWORD}\n"
        f"backup.sasl.oauthbearer.client.credentials.client.secret = {PASSWORD}\n"
    )
    settings = load(tmp_path, text).settings
    dump = redacted(settings)
    dumped = json.dumps(dump)
    assert PASSWORD not in dumped
    assert dump["clusters"]["analytics"]["sasl_password"] == "********"
    assert dump["clusters"]["analytics"]["sasl_username"] == "mm2"
    assert dump["clusters"]["primary"]["sasl_password"] is None
    assert dump["clusters"]["primary"]["consumer"]["sasl.jaas.config"] == "********"
    assert dump["flows"]["primary->backup"]["producer"]["ssl.key.password"] == "********"
    assert dump["flows"]["primary->backup"]["producer"]["compression.type"] == "zstd"
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in repr(settings.cluster("backup"))


def test_secrets_never_appear_in_errors_or_warnings(tmp_path: Path) -> None:
    """Bad secret values are masked in error messages; warnings never quote values."""
    text = MINIMAL + (
        f"A.sasl.jaas.config = org.example.Unknown required password={PASSWORD};\n"
        f"A.ssl.key.password.typo = {PASSWORD}\n"
    )
    error = config_error(
        tmp_path, text, env={"MIRROR_CLUSTERS__B__SSL_PASSWORD": "[1]", "MIRROR_X": PASSWORD}
    )
    assert PASSWORD not in str(error)
    assert "A.sasl.jaas.config: invalid value '********'" in str(error)
    yaml_error = config_error(
        tmp_path,
        f"clusters:\n  A:\n    bootstrap_servers: a:1\n    properties: {{ssl.key.password: [{PASSWORD}]}}\n",
        "mirror.yaml",
    )
    assert PASSWORD not in str(yaml_error)
    loaded = load(tmp_path, MINIMAL + f"A.bootstrap.servrs = {PASSWORD}\nservice.htp.port = {PASSWORD}\n")
    assert loaded.warnings and all(PASSWORD not in warning for warning in loaded.warnings)


# --- The configuration reference cannot drift from the model ------------------------------------------------


@pytest.mark.parametrize("model", [ClusterSettings, FlowSettings, ServiceSettings, Settings])
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    """docs/configuration.md has a row for every field of every model."""
    documented = set(re.findall(r"^\| `([a-z_]+)`", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE))
    missing = set(model.model_fields) - documented
    assert not missing, f"fields missing from {DOCS.name}: {sorted(missing)}"


def test_every_java_key_is_documented() -> None:
    """Every mm2.properties key mirror understands appears in docs/configuration.md."""
    text = DOCS.read_text(encoding="utf-8")
    keys = [*FLOW_KEYS, *CLUSTER_KEYS, *SERVICE_KEYS]
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"keys missing from {DOCS.name}: {missing}"


def test_rejected_records_keys_are_per_flow_and_checked(tmp_path: Path) -> None:
    """The policy is per flow only (opt-in: never inherited from a top-level default), its values are
    named in errors, and the retry backoff cannot start above its maximum."""
    two = MINIMAL + "A->B.enabled = true\n"
    loaded = load(
        tmp_path, two + "rejected.records.policy = dead-letter\nA->B.rejected.records.policy = HALT\n"
    )
    assert loaded.settings.flows["A->B"].rejected_records_policy == "halt"
    assert any("rejected.records.policy" in w and "top level" in w for w in loaded.warnings)
    flow = load(tmp_path, two + "A->B.rejected.records.policy = Dead-Letter\n").settings.flows["A->B"]
    assert flow.rejected_records_policy == "dead-letter"
    assert (flow.rejected_records_retry_backoff_ms, flow.rejected_records_retry_backoff_max_ms) == (
        5000,
        300000,
    )
    error = config_error(tmp_path, two + "A->B.rejected.records.policy = skip\n")
    assert "A->B.rejected.records.policy: invalid value 'skip' (allowed: one of halt, dead-letter)" in str(
        error
    )
    error = config_error(tmp_path, two + "rejected.records.retry.backoff.ms = 600000\n")
    assert "A->B.rejected.records.retry.backoff.ms: invalid value '600000'" in str(error)
