"""Tests of mirror.config.properties, .routing and .security: Java .properties syntax and MM2's key split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.config import ClusterSettings, FlowSettings, ServiceSettings
from mirror.config.layer import ConfigLayer
from mirror.config.problems import MASK, ConfigProblem, is_secret_key
from mirror.config.properties import parse_properties
from mirror.config.routing import (
    FLOW_CLIENT_PREFIXES,
    FLOW_KEYS,
    SERVICE_KEYS,
    TARGET_WORKER_KEYS,
    flow_field,
    java_key,
    properties_layer,
    split_flow_name,
)
from mirror.config.security import CLUSTER_KEYS
from mirror.config.sources import read_properties


def parsed(text: str) -> dict[str, str]:
    entries, problems = parse_properties(text)
    assert problems == []
    return {entry.key: entry.value for entry in entries}


# --- java.util.Properties syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("a=b", "a", "b"),
        ("a = b", "a", "b"),
        ("a: b", "a", "b"),
        ("a b", "a", "b"),
        ("a\t\tb", "a", "b"),
        ("a =  = b", "a", "= b"),
        ("a", "a", ""),
        ("a=", "a", ""),
        ("   indented=yes", "indented", "yes"),
        ("a=b  ", "a", "b  "),
        ("A->B.topics = x, y", "A->B.topics", "x, y"),
        ("my\\ key = v", "my key", "v"),
        ("k\\=1 = v", "k=1", "v"),
        ("k\\:1 = v", "k:1", "v"),
        ("tab = a\\tb", "tab", "a\tb"),
        ("nl = a\\nb", "nl", "a\nb"),
        ("u = caf\\u00e9", "u", "café"),
        ("other = \\q\\\\", "other", "q\\"),
    ],
)
def test_key_value_separators_and_escapes(line: str, key: str, value: str) -> None:
    """Keys end at the first unescaped '=', ':' or blank; escapes are decoded as in Java."""
    assert parsed(line) == {key: value}


def test_comments_blank_lines_and_line_endings() -> None:
    """'#' and '!' lines and blank lines are skipped; \\n, \\r\\n and \\r all end lines."""
    text = "# comment\r\n! also a comment\r\n\n   \t\na=1\rb=2\n  # indented comment\nc=3"
    assert parsed(text) == {"a": "1", "b": "2", "c": "3"}


def test_continuation_lines() -> None:
    """An odd number of trailing backslashes continues the line; the next line's indentation is dropped."""
    text = "topics = a, \\\n    b, \\\n    # not a comment\nnext = 1\n"
    assert parsed(text) == {"topics": "a, b, # not a comment", "next": "1"}


def test_even_backslashes_do_not_continue() -> None:
    """'\\\\' at the end is an escaped backslash, not a continuation."""
    assert parsed("a = x\\\\\nb = y") == {"a": "x\\", "b": "y"}


def test_continuation_at_end_of_file() -> None:
    """A continuation on the last line just ends the value."""
    assert parsed("a = x\\") == {"a": "x"}


def test_comment_lines_are_not_continued() -> None:
    """A backslash at the end of a comment line does not swallow the next line."""
    assert parsed("# comment \\\na = 1") == {"a": "1"}


def test_line_numbers_of_logical_lines() -> None:
    """Each entry carries the number of its first physical line."""
    entries, _ = parse_properties("# c\n\na = 1 \\\n  2\nb = 3\n")
    assert [(entry.key, entry.line) for entry in entries] == [("a", 3), ("b", 5)]


def test_malformed_unicode_escape_names_the_line() -> None:
    """A bad \\uXXXX escape is a problem keyed by source and line, like Java's IllegalArgumentException."""
    entries, problems = parse_properties("a = 1\nb = \\u12G4\n", source="mm2.properties")
    assert [entry.key for entry in entries] == ["a"]
    assert str(problems[0]) == (
        "mm2.properties:2: malformed \\uxxxx escape (allowed: \\uXXXX with 4 hex digits)"
    )


def test_repeated_keys_last_wins_with_warning() -> None:
    """As in Java the last value wins; mirror also warns with both line numbers."""
    layer = read_properties("clusters = A\ntasks.max = 1\ntasks.max = 2\n", source="f")
    assert layer.data["defaults"]["tasks_max"] == "2"
    assert layer.warnings == ["key 'tasks.max' is set on lines 2 and 3; the last value wins"]


@given(
    st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
        max_size=5,
    )
)
def test_parse_round_trips_java_escaped_text(entries: dict[str, str]) -> None:
    """Any key and value written with Java's escaping (Properties.store) parses back unchanged."""

    def escape(text: str, *, is_key: bool) -> str:
        out = []
        for index, char in enumerate(text):
            if char in "\\=:#!" or (char == " " and (is_key or index == 0)):
                out.append("\\" + char)
            elif char in "\t\n\r\f":
                out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[char])
            elif not char.isprintable() or ord(char) > 0x7E:
                out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
            else:
                out.append(char)
        return "".join(out)

    text = "".join(f"{escape(k, is_key=True)}={escape(v, is_key=False)}\n" for k, v in entries.items())
    entries_back, problems = parse_properties(text)
    assert problems == []
    assert {e.key: e.value for e in entries_back} == entries


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def test_surrogate_pair_escapes_decode_to_one_character() -> None:
    """Java writes characters outside the BMP as two \\u escapes; they decode back to the character."""
    entries, _ = parse_properties("k = \\ud83d\\ude00 \\ud83d")
    assert entries[0].value == "😀 \ud83d"


# --- Translation of mm2.properties keys -------------------------------------------------------------------


def test_cluster_keys_go_to_their_cluster() -> None:
    """`<alias>.<key>` keys become the cluster's fields, client overrides or verbatim properties."""
    layer = properties_layer(
        {
            "clusters": "A, B",
            "A.bootstrap.servers": "a:9092",
            "A.consumer.max.poll.records": "500",
            "A.producer.acks": "all",
            "A.admin.request.timeout.ms": "5000",
            "A.offset.flush.interval.ms": "1000",
            "A.ssl.protocol": "TLSv1.3",
        }
    )
    assert layer.aliases == ["A", "B"]
    assert layer.data["clusters"] == {
        "A": {
            "bootstrap_servers": "a:9092",
            "consumer": {"max.poll.records": "500"},
            "producer": {"acks": "all"},
            "admin": {"request.timeout.ms": "5000"},
            "properties": {"offset.flush.interval.ms": "1000", "ssl.protocol": "TLSv1.3"},
        },
        "B": {},
    }
    assert layer.warnings == [] and layer.problems == []


def test_top_level_client_keys_become_cluster_defaults() -> None:
    """Top-level security.protocol, ssl.* and sasl.* are defaults for every cluster (Java put-if-absent)."""
    layer = properties_layer(
        {
            "clusters": "A",
            "security.protocol": "SSL",
            "ssl.truststore.type": "PEM",
            "A.ssl.truststore.location": "/ca.pem",
            "ssl.cipher.suites": "TLS_AES_128_GCM_SHA256",
        }
    )
    assert layer.data["cluster_defaults"] == {
        "security_protocol": "SSL",
        "properties": {"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256"},
    }
    assert layer.data["clusters"]["A"] == {"ssl_cafile": "/ca.pem"}


def test_flow_keys_and_flow_client_overrides() -> None:
    """`A->B.<key>` sets flow fields; client keys go to the replication consumer and producer."""
    layer = properties_layer(
        {
            "clusters": "A, B",
            "A->B.enabled": "true",
            "A->B.emit.offset-syncs.enabled": "false",
            "A->B.producer.override.compression.type": "zstd",
            "A->B.producer.compression.type": "lz4",
            "A->B.producer.linger.ms": "5",
            "A->B.target.producer.linger.ms": "10",
            "A->B.consumer.max.poll.records": "100",
            "A->B.source.consumer.max.poll.records": "200",
            "A->B.consumer.fetch.min.bytes": "1",
            "A->B.target.consumer.fetch.min.bytes": "99",
            "A->B.admin.request.timeout.ms": "1",
            "A->B.consumer.poll.timeout.ms": "250",
        }
    )
    assert layer.data["flows"] == {
        "A->B": {
            "enabled": "true",
            "emit_offset_syncs_enabled": "false",
            "consumer_poll_timeout_ms": "250",
            "producer": {"compression.type": "zstd", "linger.ms": "10"},
            "consumer": {"max.poll.records": "200", "fetch.min.bytes": "1"},
        }
    }
    assert layer.warnings == []


def test_top_level_connector_keys_are_flow_defaults() -> None:
    """Top-level MM2 connector keys apply to every flow, including `enabled`."""
    layer = properties_layer(
        {"clusters": "A, B", "enabled": "true", "topics": "x", "offset.storage.topic": "t"}
    )
    assert layer.data["defaults"] == {"enabled": "true", "topics": "x", "offset_storage_topic": "t"}


def test_unchanged_java_file_gives_no_warnings() -> None:
    """Real Java MM2/Connect keys that mirror does not use are accepted silently."""
    layer = read_properties(
        """
        clusters = A, B
        A.bootstrap.servers = a:9092
        B.bootstrap.servers = b:9092
        A->B.enabled = true
        key.converter = org.apache.kafka.connect.converters.ByteArrayConverter
        value.converter = org.apache.kafka.connect.converters.ByteArrayConverter
        config.storage.replication.factor = 1
        status.storage.replication.factor = 1
        offset.storage.replication.factor = 1
        dedicated.mode.enable.internal.rest = true
        listeners = http://:8083
        metric.reporters = org.apache.kafka.common.metrics.JmxReporter
        errors.tolerance = none
        emit.heartbeats = true
        topic.filter.class = org.apache.kafka.connect.mirror.DefaultTopicFilter
        B.group.id = A-mm2
        B.exactly.once.source.support = enabled
        A->B.transforms = x
        A->B.transforms.x.type = org.example.X
        A->B.client.id = custom
        """,
        source="mm2.properties",
    )
    assert layer.warnings == []
    assert layer.problems == []


@pytest.mark.parametrize(
    ("key", "warning"),
    [
        ("topcs", "unknown key 'topcs' is ignored; did you mean 'topics'?"),
        ("tasks.maxx", "unknown key 'tasks.maxx' is ignored; did you mean 'tasks.max'?"),
        ("A->B.topcs", "unknown key 'A->B.topcs' is ignored; did you mean 'A->B.topics'?"),
        (
            "service.http.prot",
            "unknown key 'service.http.prot' is ignored; did you mean 'service.http.port'?",
        ),
        ("zzz", "unknown key 'zzz' is ignored; no similar key is known"),
        (
            "A.bootstrap.server",
            "unknown key 'A.bootstrap.server' is kept as a client property; "
            "did you mean 'A.bootstrap.servers'?",
        ),
        (
            "exactly.once.support",
            "'exactly.once.support' has no effect at top level (as in Java MM2); "
            "set it per flow, e.g. 'A->B.exactly.once.support'",
        ),
        (
            "offset.flush.interval.ms",
            "'offset.flush.interval.ms' has no effect at top level (as in Java MM2); "
            "set it per target cluster, e.g. 'B.offset.flush.interval.ms'",
        ),
        (
            "consumer.max.poll.records",
            "'consumer.max.poll.records' has no effect at top level (as in Java MM2); set it per cluster "
            "('A.consumer.max.poll.records') or per flow ('A->B.consumer.max.poll.records')",
        ),
        (
            "topics.blacklist",
            "'topics.blacklist' was removed in Kafka 4.0 and is ignored; use 'topics.exclude'",
        ),
    ],
)
def test_unknown_and_ineffective_keys_warn(key: str, warning: str) -> None:
    """Unknown keys warn with the closest known key; keys Java ignores where written say where they go."""
    layer = properties_layer({"clusters": "A, B", key: "1"})
    assert layer.warnings == [warning]
    assert layer.data["defaults"] == {}


def test_keys_of_unlisted_aliases_are_unknown() -> None:
    """`C.bootstrap.servers` with C not in `clusters` is not a cluster key."""
    layer = properties_layer({"clusters": "A", "C.bootstrap.servers": "c:1"})
    assert layer.data["clusters"] == {"A": {}}
    assert "unknown key 'C.bootstrap.servers'" in layer.warnings[0]


def test_aliases_from_other_sources() -> None:
    """Overrides without `clusters` use the aliases known from the other sources."""
    layer = properties_layer({"B.security.protocol": "SSL", "A->B.tasks.max": "3"}, aliases=["A", "B"])
    assert layer.aliases is None
    assert layer.data["clusters"] == {"B": {"security_protocol": "SSL"}}
    assert layer.data["flows"] == {"A->B": {"tasks_max": "3"}}


def test_origins_remember_the_key_as_written() -> None:
    """Every value remembers the key the user wrote, for error messages."""
    layer = properties_layer({"clusters": "A", "A.sasl.jaas.config": _jaas("u", "p"), "tasks.max": "x"})
    assert layer.origin(("clusters", "A", "sasl_password")) == "A.sasl.jaas.config"
    assert layer.origin(("defaults", "tasks_max")) == "tasks.max"
    assert layer.origin(("flows", "A->B")) == "flows.A->B"


# --- SASL and SSL keys ------------------------------------------------------------------------------------


def _jaas(username: str, password: str, module: str = "scram.ScramLoginModule") -> str:
    return f'org.apache.kafka.common.security.{module} required username="{username}" password="{password}";'


@pytest.mark.parametrize(
    ("jaas", "username", "password"),
    [
        (_jaas("mirror", "s3cr3t"), "mirror", "s3cr3t"),
        (_jaas("mirror", "s3cr3t", "plain.PlainLoginModule"), "mirror", "s3cr3t"),
        (_jaas("a b", 'with \\" quote; and semicolon'), "a b", 'with " quote; and semicolon'),
        (
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=bare password=pw ;",
            "bare",
            "pw",
        ),
        (
            "  org.apache.kafka.common.security.scram.ScramLoginModule   required\n"
            '  password="p"   username="u"  tokenauth=false;  ',
            "u",
            "p",
        ),
    ],
)
def test_sasl_jaas_config_is_parsed(jaas: str, username: str, password: str) -> None:
    """Username and password come out of the Plain or Scram login module line."""
    layer = properties_layer({"clusters": "A", "A.sasl.jaas.config": jaas})
    assert layer.problems == []
    assert layer.data["clusters"]["A"] == {"sasl_username": username, "sasl_password": password}


@pytest.mark.parametrize(
    "jaas",
    [
        "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;",
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="u";',
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p"',
        "not jaas at all password=hunter2",
    ],
)
def test_unusable_sasl_jaas_config_is_a_problem_without_the_secret(jaas: str) -> None:
    """A JAAS line mirror cannot use is a problem; its value (which holds a password) is masked."""
    layer = properties_layer({"clusters": "A", "A.sasl.jaas.config": jaas})
    [problem] = layer.problems
    assert problem.key == "A.sasl.jaas.config"
    assert problem.value == MASK
    assert "PlainLoginModule" in problem.allowed
    assert "hunter2" not in str(problem) and "p" not in (problem.value or "")


def test_pem_stores_map_to_files() -> None:
    """PEM trust and key stores become ssl_cafile / ssl_certfile; ssl.key.password becomes ssl_password."""
    layer = properties_layer(
        {
            "clusters": "A",
            "A.ssl.truststore.type": "PEM",
            "A.ssl.truststore.location": "/ca.pem",
            "A.ssl.keystore.type": "pem",
            "A.ssl.keystore.location": "/client.pem",
            "A.ssl.key.password": "kp",
            "A.ssl.endpoint.identification.algorithm": "",
        }
    )
    assert layer.problems == []
    assert layer.data["clusters"]["A"] == {
        "ssl_cafile": "/ca.pem",
        "ssl_certfile": "/client.pem",
        "ssl_password": "kp",
        "ssl_check_hostname": False,
    }


@pytest.mark.parametrize("store_type", [None, "JKS", "PKCS12", "pkcs12"])
def test_jks_and_pkcs12_stores_are_store_locations(store_type: str | None) -> None:
    """JKS (Java's default type) and PKCS12 stores are read by mirror.kafka.tls; PEM ones stay PEM files."""
    props = {"clusters": "A", "A.ssl.truststore.location": "/ca.jks", "A.ssl.keystore.location": "/c.jks"}
    if store_type:
        props["A.ssl.truststore.type"] = store_type
        props["A.ssl.keystore.type"] = store_type
    layer = properties_layer(props)
    assert layer.problems == []
    assert layer.data["clusters"]["A"] == {
        "ssl_truststore_location": "/ca.jks",
        "ssl_keystore_location": "/c.jks",
    }


def test_other_store_types_are_problems_with_the_conversion() -> None:
    props = {"clusters": "A", "A.ssl.truststore.location": "/ca.jceks", "A.ssl.truststore.type": "JCEKS"}
    [problem] = properties_layer(props).problems
    assert problem.key == "A.ssl.truststore.type"
    assert "keytool -importkeystore -srckeystore /ca.jceks -srcstoretype JCEKS" in str(problem)


# --- Tables and naming ------------------------------------------------------------------------------------


def test_key_tables_name_existing_fields() -> None:
    """Every table entry targets a real model field, so translation and model cannot drift apart."""
    assert all(flow_field(key) in FlowSettings.model_fields for key in FLOW_KEYS)
    assert all(name in ClusterSettings.model_fields for spec in CLUSTER_KEYS.values() for name in spec.fields)
    assert all(
        key.removeprefix("service.").replace(".", "_") in ServiceSettings.model_fields for key in SERVICE_KEYS
    )
    assert {target[0] for target in FLOW_CLIENT_PREFIXES.values() if target} <= set(FlowSettings.model_fields)
    assert TARGET_WORKER_KEYS["offset.flush.interval.ms"] == "offset_flush_interval_ms"


def test_every_flow_field_has_a_java_key() -> None:
    """Every FlowSettings field can be written in mm2.properties."""
    reachable = {flow_field(key) for key in FLOW_KEYS} | {"source", "target", "consumer", "producer"}
    assert reachable == set(FlowSettings.model_fields)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("clusters", "A", "sasl_mechanism"), "A.sasl.mechanism"),
        (("clusters", "A", "sasl_password"), "A.sasl.jaas.config"),
        (("clusters", "A", "bootstrap_servers"), "A.bootstrap.servers"),
        (("clusters", "A", "consumer", "max.poll.records"), "A.consumer.max.poll.records"),
        (("clusters", "A", "properties", "group.id"), "A.group.id"),
        (("flows", "A->B", "offset_syncs_topic_location"), "A->B.offset-syncs.topic.location"),
        (("service", "http_port"), "service.http.port"),
        (("clusters",), "clusters"),
    ],
)
def test_java_key_names_model_paths(path: tuple[str, ...], key: str) -> None:
    """Model paths are named the mm2.properties way in error messages."""
    assert java_key(path) == key


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("A->B", ("A", "B")),
        ("us-east->eu_1", ("us-east", "eu_1")),
        ("A->", None),
        ("->B", None),
        ("AB", None),
    ],
)
def test_split_flow_name(name: str, expected: tuple[str, str] | None) -> None:
    """Flow names are two aliases joined by '->'."""
    assert split_flow_name(name) == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("sasl.jaas.config", True),
        ("A.ssl.key.password", True),
        ("sasl_password", True),
        ("sasl.oauthbearer.client.credentials.client.secret", True),
        ("ssl.keystore.key", True),
        ("MIRROR_CLUSTERS__A__SASL_PASSWORD", True),
        ("bootstrap.servers", False),
        ("sasl.mechanism", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    """Secret values are recognised by their key."""
    assert is_secret_key(key) is secret


def test_problem_masks_secret_values() -> None:
    """A problem about a secret key never carries the value."""
    problem = ConfigProblem.of("A.ssl.key.password", "hunter2", "a string")
    assert problem.value == MASK
    assert "hunter2" not in str(problem)
    assert str(ConfigProblem.of("k", {"password": "x", "a": 1}, "a")) == (
        "k: invalid value '{'password': '********', 'a': 1}' (allowed: a)"
    )


def test_layer_set_builds_nested_dicts() -> None:
    """ConfigLayer.set creates the intermediate dicts."""
    layer = ConfigLayer()
    layer.set(("flows", "A->B", "producer", "acks"), "all", "A->B.producer.acks")
    assert layer.data["flows"] == {"A->B": {"producer": {"acks": "all"}}}
    assert layer.origin(("flows", "A->B", "producer")) == "A->B.producer.acks"
