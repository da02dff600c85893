"""Tests of mirror.config.client_keys: the registry of Java client keys and the checks at load time."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from mirror.cli import main
from mirror.config import ConfigError, LoadedSettings, load_settings
from mirror.config.client_keys import (
    CLIENT_KEYS,
    IGNORED_CLIENT_KEYS,
    REPLICATION_PRODUCER_KEYS,
    ROLES,
    ClientKeyFindings,
    client_arguments,
    client_key_problems,
    is_known_client_key,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
MINIMAL = "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\n"
MINIMAL_YAML = "clusters:\n  A: {bootstrap_servers: 'a:9092'}\n  B: {bootstrap_servers: 'b:9092'}\n"


def load(
    tmp_path: Path, text: str, name: str = "mm2.properties", env: Mapping[str, str] = {}
) -> LoadedSettings:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env=env)


def config_error(tmp_path: Path, text: str, name: str = "mm2.properties", env: Mapping[str, str] = {}) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, name, env)
    return str(info.value)


# --- The registry -------------------------------------------------------------------------------------------

#: The Java key -> Kafka client argument table the clients were built with before the registry (kept here so
#: that a change to a name is deliberate).
EXPECTED_ARGUMENTS = {
    "consumer": {
        "client.id": "client_id",
        "request.timeout.ms": "request_timeout_ms",
        "retry.backoff.ms": "retry_backoff_ms",
        "metadata.max.age.ms": "metadata_max_age_ms",
        "connections.max.idle.ms": "connections_max_idle_ms",
        "fetch.max.bytes": "fetch_max_bytes",
        "fetch.min.bytes": "fetch_min_bytes",
        "fetch.max.wait.ms": "fetch_max_wait_ms",
        "max.partition.fetch.bytes": "max_partition_fetch_bytes",
        "max.poll.records": "max_poll_records",
        "isolation.level": "isolation_level",
        "auto.offset.reset": "auto_offset_reset",
        "check.crcs": "check_crcs",
        "client.rack": "client_rack",
        "session.timeout.ms": "session_timeout_ms",
        "heartbeat.interval.ms": "heartbeat_interval_ms",
        "max.poll.interval.ms": "max_poll_interval_ms",
    },
    "producer": {
        "client.id": "client_id",
        "request.timeout.ms": "request_timeout_ms",
        "retry.backoff.ms": "retry_backoff_ms",
        "metadata.max.age.ms": "metadata_max_age_ms",
        "connections.max.idle.ms": "connections_max_idle_ms",
        "acks": "acks",
        "compression.type": "compression_type",
        "batch.size": "max_batch_size",
        "linger.ms": "linger_ms",
        "max.request.size": "max_request_size",
        "enable.idempotence": "enable_idempotence",
        "transaction.timeout.ms": "transaction_timeout_ms",
    },
    "admin": {
        "client.id": "client_id",
        "request.timeout.ms": "request_timeout_ms",
        "retry.backoff.ms": "retry_backoff_ms",
        "metadata.max.age.ms": "metadata_max_age_ms",
        "connections.max.idle.ms": "connections_max_idle_ms",
    },
}


def test_registry_has_the_client_arguments() -> None:
    assert {role: {k: v.argument for k, v in keys.items()} for role, keys in CLIENT_KEYS.items()} == (
        EXPECTED_ARGUMENTS
    )


@pytest.mark.parametrize(
    ("role", "overrides", "expected"),
    [
        (
            "consumer",
            {"max.poll.records": "500", "check.crcs": "TRUE"},
            {"max_poll_records": 500, "check_crcs": True},
        ),
        ("consumer", {"isolation.level": " Read_Committed "}, {"isolation_level": "read_committed"}),
        ("consumer", {"auto.offset.reset": "EARLIEST"}, {"auto_offset_reset": "earliest"}),
        ("consumer", {"client.rack": "rack-1", "key.deserializer": "x"}, {"client_rack": "rack-1"}),
        ("producer", {"acks": "all", "compression.type": "none"}, {"acks": "all", "compression_type": None}),
        ("producer", {"acks": "-1", "compression.type": "zstd"}, {"acks": -1, "compression_type": "zstd"}),
        (
            "producer",
            {"batch.size": "16384", "enable.idempotence": "false"},
            {"max_batch_size": 16384, "enable_idempotence": False},
        ),
        ("admin", {"request.timeout.ms": "30000", "retries": "5"}, {"request_timeout_ms": 30000}),
    ],
)
def test_client_arguments_convert_like_the_clients_did(
    role: str, overrides: dict[str, str], expected: dict[str, object]
) -> None:
    assert client_arguments(role, overrides) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "key", "value", "allowed"),
    [
        ("consumer", "max.poll.records", "abc", "an integer >= 1"),
        ("consumer", "max.poll.records", "0", "an integer >= 1"),
        ("consumer", "fetch.min.bytes", "-1", "an integer >= 0"),
        ("consumer", "fetch.min.bytes", "1_000", "an integer >= 0"),
        ("consumer", "check.crcs", "yes", "true or false"),
        ("consumer", "isolation.level", "committed", "read_committed or read_uncommitted"),
        ("consumer", "auto.offset.reset", "smallest", "earliest, latest or none"),
        ("producer", "acks", "2", "all, 0, 1 or -1"),
        ("producer", "compression.type", "brotli", "none, gzip, snappy, lz4 or zstd"),
        ("producer", "enable.idempotence", "on", "true or false"),
        ("admin", "request.timeout.ms", "soon", "an integer >= 1"),
    ],
)
def test_bad_values_are_problems(role: str, key: str, value: str, allowed: str) -> None:
    found = client_key_problems(role, key, value, written=f"A.{role}.{key}")  # type: ignore[arg-type]
    assert found.warning is None and found.problem is not None
    assert str(found.problem) == f"A.{role}.{key}: invalid value '{value}' (allowed: {allowed})"


def test_ignored_java_keys_are_known_and_not_passed_on() -> None:
    for role in ROLES:
        for key in IGNORED_CLIENT_KEYS[role]:
            assert key not in CLIENT_KEYS[role]
            assert client_key_problems(role, key, "anything", written=key).warning is None
    for key in ("buffer.memory", "key.serializer", "interceptor.classes", "send.buffer.bytes"):
        assert is_known_client_key("producer", key)
    assert is_known_client_key("consumer", "ssl.truststore.location")


def test_unknown_key_warning_names_the_closest_known_key() -> None:
    found = client_key_problems("consumer", "max.pol.records", "5", written="A->B.consumer.max.pol.records")
    assert found.problem is None
    assert found.warning == (
        "unknown consumer key 'max.pol.records' in A->B.consumer.max.pol.records "
        "(did you mean max.poll.records?)"
    )
    found = client_key_problems("admin", "zzz", "5", written="A.admin.zzz")
    assert found.warning == "unknown admin key 'zzz' in A.admin.zzz (no similar key is known)"


# --- At load time: mm2.properties, YAML, TOML, environment --------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "A->B.consumer.max.pol.records = 5",
        "A.consumer.max.pol.records = 5",
        "A->B.source.consumer.max.pol.records = 5",
    ],
)
def test_properties_typo_is_a_warning(tmp_path: Path, line: str) -> None:
    loaded = load(tmp_path, MINIMAL + line + "\n")
    written = line.partition(" =")[0]
    assert (
        f"unknown consumer key 'max.pol.records' in {written} (did you mean max.poll.records?)"
        in loaded.warnings
    )


def test_properties_producer_typo_is_a_warning(tmp_path: Path) -> None:
    loaded = load(tmp_path, MINIMAL + "A->B.producer.override.lingr.ms = 5\n")
    assert loaded.warnings == [
        "unknown producer key 'lingr.ms' in A->B.producer.override.lingr.ms (did you mean linger.ms?)"
    ]


def test_java_only_client_keys_load_without_warnings(tmp_path: Path) -> None:
    text = MINIMAL + (
        "A.consumer.key.deserializer = org.apache.kafka.common.serialization.ByteArrayDeserializer\n"
        "B.producer.max.block.ms = 60000\n"
        "A->B.producer.buffer.memory = 33554432\n"
        "A->B.producer.interceptor.classes = com.example.Interceptor\n"
        "B.admin.default.api.timeout.ms = 60000\n"
    )
    assert load(tmp_path, text).warnings == []


REPLICATION_ONLY = (
    "producer key 'delivery.timeout.ms' in {written} is honoured by the replication producer of each flow "
    "writing to this cluster only; mirror's producers of its internal topics (heartbeats, checkpoints, "
    "offset syncs, progress, controls) ignore it (set it per flow, A->B.producer.*, to silence this)"
)


@pytest.mark.parametrize("key", sorted(REPLICATION_PRODUCER_KEYS))
def test_replication_producer_keys_are_checked_and_not_passed_to_aiokafka(key: str) -> None:
    """Only the replication producer reads them (`BatchProducer`): a bad value is a problem at load time,
    and aiokafka's producers never get them."""
    found = client_key_problems("producer", key, "0", written=f"A->B.producer.{key}")
    assert str(found.problem) == f"A->B.producer.{key}: invalid value '0' (allowed: an integer >= 1)"
    assert client_key_problems("producer", key, "7", written=f"A->B.producer.{key}") == ClientKeyFindings()
    assert client_arguments("producer", {key: "7"}) == {}
    assert not is_known_client_key("consumer", key)


def test_replication_producer_keys_of_a_cluster_warn_which_producers_ignore_them(tmp_path: Path) -> None:
    """Set for the target cluster, the warning says exactly who honours the key; set for a flow (only its
    replication producer reads a flow's producer keys) there is nothing to say."""
    loaded = load(tmp_path, MINIMAL + "B.producer.delivery.timeout.ms = 60000\n")
    assert loaded.warnings == [REPLICATION_ONLY.format(written="B.producer.delivery.timeout.ms")]
    assert load(tmp_path, MINIMAL + "A->B.producer.delivery.timeout.ms = 60000\n").warnings == []
    yaml = MINIMAL_YAML + "  X: {bootstrap_servers: 'x:9092', producer: {delivery.timeout.ms: '1'}}\n"
    assert len(load(tmp_path, yaml, "mirror.yaml").warnings) == 1
    assert "B.producer.delivery.timeout.ms: invalid value 'soon'" in config_error(
        tmp_path, MINIMAL + "B.producer.delivery.timeout.ms = soon\n"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "A.consumer.max.poll.records = abc",
            "A.consumer.max.poll.records: invalid value 'abc' (allowed: an integer >= 1)",
        ),
        ("A->B.producer.acks = some", "A->B.producer.acks: invalid value 'some' (allowed: all, 0, 1 or -1)"),
        (
            "B.producer.compression.type = brotli",
            "B.producer.compression.type: invalid value 'brotli' (allowed: none, gzip, snappy, lz4 or zstd)",
        ),
        (
            "A.admin.request.timeout.ms = 1s",
            "A.admin.request.timeout.ms: invalid value '1s' (allowed: an integer >= 1)",
        ),
    ],
)
def test_properties_bad_value_is_an_error(tmp_path: Path, line: str, message: str) -> None:
    assert config_error(tmp_path, MINIMAL + line + "\n") == message


def test_every_bad_client_value_is_reported(tmp_path: Path) -> None:
    text = MINIMAL + "A.consumer.max.poll.records = abc\nA->B.consumer.check.crcs = maybe\n"
    message = config_error(tmp_path, text)
    assert message.startswith("2 configuration problems:")
    assert "A.consumer.max.poll.records: invalid value 'abc'" in message
    assert "A->B.consumer.check.crcs: invalid value 'maybe' (allowed: true or false)" in message


def test_yaml_typo_and_bad_value(tmp_path: Path) -> None:
    typo = MINIMAL_YAML + "flows:\n  A->B: {consumer: {max.pol.records: 5}}\n"
    assert load(tmp_path, typo, "m.yaml").warnings == [
        "unknown consumer key 'max.pol.records' in flows.A->B.consumer.max.pol.records "
        "(did you mean max.poll.records?)"
    ]
    bad = MINIMAL_YAML.replace("'a:9092'", "'a:9092', consumer: {max.poll.records: abc}")
    assert config_error(tmp_path, bad, "m.yaml") == (
        "clusters.A.consumer.max.poll.records: invalid value 'abc' (allowed: an integer >= 1)"
    )


def test_toml_bad_value(tmp_path: Path) -> None:
    text = (
        '[clusters.A]\nbootstrap_servers = "a:9092"\n[clusters.B]\nbootstrap_servers = "b:9092"\n'
        '[flows."A->B"]\nproducer = { "linger.ms" = -5 }\n'
    )
    assert config_error(tmp_path, text, "m.toml") == (
        "flows.A->B.producer.linger.ms: invalid value '-5' (allowed: an integer >= 0)"
    )


def test_env_typo_and_bad_value(tmp_path: Path) -> None:
    typo = {"MIRROR_FLOWS__A__B__CONSUMER__max.pol.records": "5"}
    assert load(tmp_path, MINIMAL, env=typo).warnings == [
        "unknown consumer key 'max.pol.records' in MIRROR_FLOWS__A__B__CONSUMER__max.pol.records "
        "(did you mean max.poll.records?)"
    ]
    bad = {"MIRROR_CLUSTERS__A__CONSUMER__max.poll.records": "abc"}
    assert config_error(tmp_path, MINIMAL, env=bad) == (
        "MIRROR_CLUSTERS__A__CONSUMER__max.poll.records: invalid value 'abc' (allowed: an integer >= 1)"
    )


def test_env_json_mapping_names_the_variable_and_hides_secrets(tmp_path: Path) -> None:
    env = {
        "MIRROR_CLUSTERS__A__CONSUMER": json.dumps(
            {"sasl.jaas.config": "password='t0psecret'", "max.poll.records": "many", "fetch.mn.bytes": "1"}
        )
    }
    with pytest.raises(ConfigError) as info:
        load(tmp_path, MINIMAL, env=env)
    assert str(info.value) == (
        "MIRROR_CLUSTERS__A__CONSUMER: invalid value for max.poll.records 'many' (allowed: an integer >= 1)"
    )
    assert "t0psecret" not in str(info.value)


def test_secret_client_values_are_never_shown(tmp_path: Path) -> None:
    found = client_key_problems(
        "consumer", "max.poll.records", "x", written="MIRROR_CLUSTERS__A__CONSUMER_PASSWORD"
    )
    assert found.problem is not None and "'x'" not in str(found.problem)


# --- mirror validate ----------------------------------------------------------------------------------------


def test_validate_exits_2_on_a_bad_client_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mm2.properties"
    config.write_text(MINIMAL + "A.consumer.max.poll.records = abc\n")
    assert main(["validate", "--offline", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "A.consumer.max.poll.records: invalid value 'abc' (allowed: an integer >= 1)" in err
    assert "Traceback" not in err


def test_validate_warns_about_a_client_key_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mm2.properties"
    config.write_text(MINIMAL + "A->B.consumer.max.pol.records = 5\n")
    assert main(["validate", "--offline", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "unknown consumer key 'max.pol.records' in A->B.consumer.max.pol.records" in output
    assert "did you mean max.poll.records?" in output


# --- docs/configuration.md lists the registry ---------------------------------------------------------------


def _documented_client_keys() -> dict[str, set[str]]:
    """The client keys of the doc's "Java client keys" tables: role -> keys (used and ignored)."""
    text = DOCS.read_text(encoding="utf-8")
    section = re.split(r"\n##+ ", text.partition("### Java client keys")[2])[0]
    assert section, "docs/configuration.md has no '### Java client keys' section"
    documented: dict[str, set[str]] = {role: set() for role in ROLES}
    for row in re.findall(r"^\| `([a-z0-9.]+)` \|([^|]*)\|", section, flags=re.MULTILINE):
        key, roles = row
        for role in ROLES:
            if role in roles:
                documented[role].add(key)
    return documented


def test_docs_list_every_registry_key_and_no_other() -> None:
    documented = _documented_client_keys()
    for role in ROLES:
        registry = set(CLIENT_KEYS[role]) | IGNORED_CLIENT_KEYS[role]
        if role == "producer":
            registry |= set(REPLICATION_PRODUCER_KEYS)
        assert registry - documented[role] == set(), f"{role} keys missing in docs/configuration.md"
        assert documented[role] - registry == set(), f"{role} keys in docs/configuration.md but not known"


def test_docs_give_each_used_key_its_allowed_values_and_argument() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = re.split(r"\n##+ ", text.partition("### Java client keys")[2])[0]
    rows = re.findall(r"^\| `([a-z0-9.]+)` \|[^|]*\| ([^|]+) \| `(\w+)` \|$", section, flags=re.MULTILINE)
    documented = {key: (allowed, argument) for key, allowed, argument in rows}
    for role in ROLES:
        for key, spec in CLIENT_KEYS[role].items():
            assert documented.get(key) == (spec.allowed, spec.argument), key
