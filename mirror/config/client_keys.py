"""The Java client keys of mirror's consumers, producers and admin clients, in one declarative registry.

Client overrides (``A.consumer.max.poll.records``, ``A->B.producer.linger.ms``, ``clusters.A.admin`` in YAML)
are Java client keys. :data:`CLIENT_KEYS` says, per role, which ones mirror passes on to its Kafka clients:
the client's keyword argument, how the text becomes its value, and what is allowed in words.
:data:`IGNORED_CLIENT_KEYS` lists the Java keys that have no equivalent here: they are accepted and ignored
without a warning, so an unchanged Java file loads cleanly. :data:`REPLICATION_PRODUCER_KEYS` are producer
keys only the replication producer of a flow honours (it reads them itself). :func:`client_key_problems`
checks one key at load time: a bad value is a :class:`~mirror.config.problems.ConfigProblem`, an unknown key
a warning naming the closest known key. docs/configuration.md lists the same keys (a unit test keeps them
in step).

Pure module: no Kafka client library is imported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from mirror.config.problems import MASK, ConfigProblem, is_secret_key

Role = Literal["consumer", "producer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

#: What a converted value can be (the keyword arguments of the Kafka clients).
ClientValue = str | int | bool | None


@dataclass(frozen=True)
class ClientKey:
    """One Java client key that mirror passes on: ``argument=convert(text)``; ``allowed`` is in words."""

    argument: str
    convert: Callable[[str], ClientValue]  # raises ValueError when the text is not allowed
    allowed: str

    def value(self, text: str) -> ClientValue:
        """The argument's value for ``text``; ValueError (with :attr:`allowed`) if the text is not allowed."""
        try:
            return self.convert(text)
        except ValueError:
            raise ValueError(self.allowed) from None


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _integer(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        stripped = text.strip()
        if _INTEGER.fullmatch(stripped) is None or int(stripped) < minimum:
            raise ValueError(text)
        return int(stripped)

    return convert


def _int_key(argument: str, minimum: int) -> ClientKey:
    return ClientKey(argument, _integer(minimum), f"an integer >= {minimum}")


def _text(text: str) -> str:
    return str(text)


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _one_of(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(text)
        return lowered

    return convert


def _acks(text: str) -> str | int:
    lowered = text.strip().lower()
    if lowered == "all":
        return "all"
    if lowered not in ("0", "1", "-1"):
        raise ValueError(text)
    return int(lowered)


def _compression(text: str) -> str | None:
    if text in ("none", ""):
        return None
    if text not in ("gzip", "snappy", "lz4", "zstd"):
        raise ValueError(text)
    return text


_COMMON: dict[str, ClientKey] = {
    "client.id": ClientKey("client_id", _text, "a string"),
    "request.timeout.ms": _int_key("request_timeout_ms", 1),
    "retry.backoff.ms": _int_key("retry_backoff_ms", 0),
    "metadata.max.age.ms": _int_key("metadata_max_age_ms", 0),
    "connections.max.idle.ms": _int_key("connections_max_idle_ms", 0),
}

#: Role -> Java client key -> how mirror passes it to its Kafka client.
CLIENT_KEYS: Mapping[Role, Mapping[str, ClientKey]] = {
    "consumer": {
        **_COMMON,
        "fetch.max.bytes": _int_key("fetch_max_bytes", 1),
        "fetch.min.bytes": _int_key("fetch_min_bytes", 0),
        "fetch.max.wait.ms": _int_key("fetch_max_wait_ms", 0),
        "max.partition.fetch.bytes": _int_key("max_partition_fetch_bytes", 1),
        "max.poll.records": _int_key("max_poll_records", 1),
        "isolation.level": ClientKey(
            "isolation_level",
            _one_of("read_committed", "read_uncommitted"),
            "read_committed or read_uncommitted",
        ),
        "auto.offset.reset": ClientKey(
            "auto_offset_reset", _one_of("earliest", "latest", "none"), "earliest, latest or none"
        ),
        "check.crcs": ClientKey("check_crcs", _boolean, "true or false"),
        "client.rack": ClientKey("client_rack", _text, "a string"),
        "session.timeout.ms": _int_key("session_timeout_ms", 1),
        "heartbeat.interval.ms": _int_key("heartbeat_interval_ms", 1),
        "max.poll.interval.ms": _int_key("max_poll_interval_ms", 1),
    },
    "producer": {
        **_COMMON,
        "acks": ClientKey("acks", _acks, "all, 0, 1 or -1"),
        "compression.type": ClientKey("compression_type", _compression, "none, gzip, snappy, lz4 or zstd"),
        "batch.size": _int_key("max_batch_size", 1),
        "linger.ms": _int_key("linger_ms", 0),
        "max.request.size": _int_key("max_request_size", 1),
        "enable.idempotence": ClientKey("enable_idempotence", _boolean, "true or false"),
        "transaction.timeout.ms": _int_key("transaction_timeout_ms", 1),
    },
    "admin": dict(_COMMON),
}

_IGNORED_COMMON = frozenset(
    {
        "bootstrap.servers",
        "security.protocol",
        "client.dns.lookup",
        "send.buffer.bytes",
        "receive.buffer.bytes",
        "reconnect.backoff.ms",
        "reconnect.backoff.max.ms",
        "retry.backoff.max.ms",
        "socket.connection.setup.timeout.ms",
        "socket.connection.setup.timeout.max.ms",
        "metadata.recovery.strategy",
        "metadata.recovery.rebootstrap.trigger.ms",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.recording.level",
        "metrics.sample.window.ms",
        "auto.include.jmx.reporter",
        "enable.metrics.push",
        "security.providers",
    }
)

#: Role -> Java client keys with no equivalent in mirror's clients: accepted, ignored, never warned about.
#: Keys starting with ``ssl.`` or ``sasl.`` are accepted the same way (the cluster's keys configure security).
IGNORED_CLIENT_KEYS: Mapping[Role, frozenset[str]] = {
    "consumer": _IGNORED_COMMON
    | {
        "key.deserializer",
        "value.deserializer",
        "interceptor.classes",
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.remote.assignor",
        "partition.assignment.strategy",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "exclude.internal.topics",
        "allow.auto.create.topics",
        "default.api.timeout.ms",
    },
    "producer": _IGNORED_COMMON
    | {
        "key.serializer",
        "value.serializer",
        "interceptor.classes",
        "retries",
        "max.block.ms",
        "partitioner.class",
        "partitioner.ignore.keys",
        "partitioner.adaptive.partitioning.enable",
        "partitioner.availability.timeout.ms",
        "transactional.id",
        "metadata.max.idle.ms",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
    },
    "admin": _IGNORED_COMMON
    | {
        "default.api.timeout.ms",
        "retries",
        "bootstrap.controllers",
        "host.resolver.class",
    },
}

_IGNORED_PREFIXES = ("ssl.", "sasl.")

#: Not a Java key: mirror's replication producer opens this many connections to each target broker.
_CONNECTIONS = "connections.per.broker"

#: Java producer keys (and `_CONNECTIONS`, ours) that the replication producer of a flow
#: (`mirror.kafka.producer.BatchProducer`, which writes the copied records, and the dead letters and
#: exactly-once progress that go with them) reads itself, since aiokafka's producer has no such option:
#: ``argument`` is the key itself. mirror's other producers, those of its internal topics, ignore them.
REPLICATION_PRODUCER_KEYS: Mapping[str, ClientKey] = {
    key: ClientKey(key, _integer(1), "an integer >= 1")
    for key in ("delivery.timeout.ms", "max.in.flight.requests.per.connection", "buffer.memory", _CONNECTIONS)
}

#: Who ignores a :data:`REPLICATION_PRODUCER_KEYS` key set for a whole cluster (docs/configuration.md).
INTERNAL_PRODUCERS = "heartbeats, checkpoints, offset syncs, progress, controls"


def is_known_client_key(role: Role, key: str) -> bool:
    """Whether ``key`` is a Java client key of ``role`` (used, used by the replication producer only, or
    deliberately ignored)."""
    return (
        key in CLIENT_KEYS[role]
        or key in IGNORED_CLIENT_KEYS[role]
        or key.startswith(_IGNORED_PREFIXES)
        or (role == "producer" and key in REPLICATION_PRODUCER_KEYS)
    )


@dataclass(frozen=True)
class ClientKeyFindings:
    """What :func:`client_key_problems` found about one key: at most one problem or one warning."""

    problem: ConfigProblem | None = None
    warning: str | None = None


def client_key_problems(
    role: Role, key: str, value: object, *, written: str, of_cluster: bool = False
) -> ClientKeyFindings:
    """Check one client override of ``role``: ``key`` is the Java client key, ``written`` the key as the user
    wrote it (``A->B.consumer.max.poll.records``, or the variable holding a JSON mapping); ``of_cluster``:
    set for a whole cluster (``B.producer.*``), not for one flow.

    A value that the key does not allow is a problem naming ``written``, the value and what is allowed; an
    unknown key is a warning naming the closest known key. A key only the replication producer honours,
    set for a whole cluster, is a warning naming the producers that ignore it. Secret values are never
    shown."""
    spec = CLIENT_KEYS[role].get(key)
    own = REPLICATION_PRODUCER_KEYS.get(key) if role == "producer" else None
    checked = spec if spec is not None else own
    if checked is not None:
        text = value if isinstance(value, str) else str(value)
        try:
            checked.value(text)
        except ValueError:
            inner = not written.endswith(key)
            problem = f"invalid value for {key}" if inner else "invalid value"
            shown = MASK if is_secret_key(key) or is_secret_key(written) else text
            return ClientKeyFindings(problem=ConfigProblem(written, shown, checked.allowed, problem))
        if own is not None and of_cluster:
            return ClientKeyFindings(warning=replication_only_warning(key, written))
        return ClientKeyFindings()
    if is_known_client_key(role, key):
        return ClientKeyFindings()
    known = [
        *CLIENT_KEYS[role],
        *IGNORED_CLIENT_KEYS[role],
        *(REPLICATION_PRODUCER_KEYS if role == "producer" else ()),
    ]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "no similar key is known"
    return ClientKeyFindings(warning=f"unknown {role} key {key!r} in {written} ({hint})")


def replication_only_warning(key: str, written: str) -> str:
    """What a :data:`REPLICATION_PRODUCER_KEYS` key set for a whole cluster does, and does not."""
    return (
        f"producer key {key!r} in {written} is honoured by the replication producer of each flow writing to "
        f"this cluster only; mirror's producers of its internal topics ({INTERNAL_PRODUCERS}) ignore it "
        "(set it per flow, A->B.producer.*, to silence this)"
    )


def client_arguments(role: Role, overrides: Mapping[str, str]) -> dict[str, ClientValue]:
    """The keyword arguments of a ``role`` client for Java client ``overrides`` (unknown or ignored keys are
    left out; values were checked when the settings were loaded)."""
    table = CLIENT_KEYS[role]
    return {table[key].argument: table[key].value(text) for key, text in overrides.items() if key in table}
