"""The only module that talks to aiokafka: builds clients from settings, translates its errors.

Everything above this module sees `mirror` types (``SourceBatch``, ``Ack``, ``TopicDescription``) and
`mirror.errors` exceptions, never aiokafka's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiokafka.consumer.fetcher as _fetcher
import aiokafka.errors as ke
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mirror.config import ClusterSettings
from mirror.errors import (
    AuthenticationFailed,
    AuthorizationFailed,
    KafkaRequestFailed,
    KafkaUnavailable,
    MirrorError,
    ProducerFenced,
    RecordRejected,
    SourceOutOfRange,
    TlsFailed,
)
from mirror.kafka import tls

log = structlog.get_logger(__name__)

Role = Literal["consumer", "producer", "admin"]

# Java client key -> (aiokafka keyword, converter), per role. Keys not listed are ignored (logged once):
# Java has many (serializers, interceptors, buffer sizes) with no aiokafka equivalent.
_COMMON: dict[str, tuple[str, type]] = {
    "client.id": ("client_id", str),
    "request.timeout.ms": ("request_timeout_ms", int),
    "retry.backoff.ms": ("retry_backoff_ms", int),
    "metadata.max.age.ms": ("metadata_max_age_ms", int),
    "connections.max.idle.ms": ("connections_max_idle_ms", int),
}
_CLIENT_KEYS: dict[Role, dict[str, tuple[str, type]]] = {
    "consumer": {
        **_COMMON,
        "fetch.max.bytes": ("fetch_max_bytes", int),
        "fetch.min.bytes": ("fetch_min_bytes", int),
        "fetch.max.wait.ms": ("fetch_max_wait_ms", int),
        "max.partition.fetch.bytes": ("max_partition_fetch_bytes", int),
        "max.poll.records": ("max_poll_records", int),
        "isolation.level": ("isolation_level", lambda v: str(v).strip().lower()),  # type: ignore[dict-item]
        "auto.offset.reset": ("auto_offset_reset", lambda v: str(v).strip().lower()),  # type: ignore[dict-item]
        "check.crcs": ("check_crcs", lambda v: str(v).lower() == "true"),  # type: ignore[dict-item]
        "client.rack": ("client_rack", str),
        "session.timeout.ms": ("session_timeout_ms", int),
        "heartbeat.interval.ms": ("heartbeat_interval_ms", int),
        "max.poll.interval.ms": ("max_poll_interval_ms", int),
    },
    "producer": {
        **_COMMON,
        "acks": ("acks", lambda v: "all" if str(v).strip().lower() == "all" else int(v)),  # type: ignore[dict-item]
        "compression.type": ("compression_type", lambda v: None if v in ("none", "") else v),  # type: ignore[dict-item]
        "batch.size": ("max_batch_size", int),
        "linger.ms": ("linger_ms", int),
        "max.request.size": ("max_request_size", int),
        "enable.idempotence": ("enable_idempotence", lambda v: str(v).lower() == "true"),  # type: ignore[dict-item]
        "transaction.timeout.ms": ("transaction_timeout_ms", int),
    },
    "admin": dict(_COMMON),
}


def _ssl_context(cluster: ClusterSettings) -> ssl.SSLContext | None:
    """TLS from PEM files, JKS/PKCS12 stores or inline PEM (`mirror.kafka.tls`); TlsFailed naming the key."""
    if cluster.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return tls.client_context(cluster)


def client_kwargs(
    cluster: ClusterSettings, role: Role, overrides: Mapping[str, str] = {}, client_id: str | None = None
) -> dict[str, Any]:
    """aiokafka keyword arguments for one client: connection + security + Java-style overrides."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(cluster.bootstrap_servers),
        "security_protocol": cluster.security_protocol,
    }
    if client_id:
        kwargs["client_id"] = client_id
    ctx = _ssl_context(cluster)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if cluster.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = cluster.sasl_mechanism
        kwargs["sasl_plain_username"] = cluster.sasl_username
        if cluster.sasl_password is not None:
            kwargs["sasl_plain_password"] = cluster.sasl_password.get_secret_value()
    table = _CLIENT_KEYS[role]
    role_overrides = {**getattr(cluster, role), **overrides}
    for key, raw in role_overrides.items():
        if key in table:
            name, conv = table[key]
            kwargs[name] = conv(raw)
    return kwargs


# --- error translation -------------------------------------------------------------------------------

_AUTH_ERRORS = (
    ke.TopicAuthorizationFailedError,
    ke.GroupAuthorizationFailedError,
    ke.ClusterAuthorizationFailedError,
    ke.TransactionalIdAuthorizationFailed,
)


def translate(exc: BaseException, cluster: ClusterSettings | None = None) -> MirrorError:
    """Map an aiokafka (or socket) error onto the `mirror` error tree; with ``cluster``, authentication and
    TLS failures name it."""
    if isinstance(exc, MirrorError):
        return exc
    if isinstance(exc, ke.ProducerFenced):
        return ProducerFenced(str(exc))
    security = security_failure(exc, cluster)
    if security is not None:
        return security
    named = _named(exc)
    if isinstance(exc, ke.TopicAuthorizationFailedError) and named is not None:
        return denied(cluster, "use", f"topic {named}", exc)
    if isinstance(exc, ke.GroupAuthorizationFailedError) and named is not None:
        return denied(cluster, "use", f"consumer group {named}", exc)
    if isinstance(exc, _AUTH_ERRORS):
        return AuthorizationFailed(
            f"{_where(cluster)}{type(exc).__name__}: {exc}", code=getattr(exc, "errno", -1)
        )
    if isinstance(exc, (ke.KafkaConnectionError, ke.NodeNotReadyError, ke.KafkaTimeoutError, OSError)):
        return KafkaUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return KafkaUnavailable("request timed out")
    if isinstance(exc, ke.KafkaError):
        return KafkaRequestFailed(
            f"{type(exc).__name__}: {exc}", code=getattr(exc, "errno", -1), retriable=True
        )
    return MirrorError(f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def translated(cluster: ClusterSettings | None = None) -> AsyncIterator[None]:
    """Translate aiokafka errors raised inside; with ``cluster``, a failed bootstrap (which aiokafka reports
    without its cause) is diagnosed with one direct connection, so that a refused password or an untrusted
    certificate says so instead of "Unable to bootstrap"."""
    try:
        yield
    except (ke.KafkaError, OSError, TimeoutError) as exc:
        err = translate(exc, cluster)
        if (
            cluster is not None
            and isinstance(err, KafkaUnavailable)
            and isinstance(exc, ke.KafkaConnectionError | ke.NodeNotReadyError | OSError)
        ):
            err = await diagnose(cluster) or err
        raise err from exc


# --- authentication, TLS and authorization failures ----------------------------------------------------

#: OpenSSL alert reasons meaning the broker did not accept our client certificate (or got none).
_CLIENT_CERT_REJECTED = (
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
)
_TLS_ALERT_RECORD = 0x15  # first byte of a TLS alert record: a TLS listener answering a non-TLS client


async def closed(closing: Awaitable[Any], timeout: float = 3.0) -> None:
    """Close an aiokafka client: bounded by ``timeout``, errors ignored, and never a stray cancellation.

    aiokafka's ``stop()`` cancels its background requests and awaits them; when one was waiting (say, in
    a retry backoff while a broker is down) their CancelledError escapes ``stop()``. Leaking it would end
    the caller as if it had been cancelled (a task session that then never restarts). Only a genuine
    cancellation of the caller propagates (the close still runs to its end, or its timeout)."""
    task = asyncio.ensure_future(asyncio.wait_for(closing, timeout))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the close itself goes on in the background, bounded by its timeout
    except Exception:  # noqa: BLE001  (timed out or failed: the client is abandoned either way)
        return


def _where(cluster: ClusterSettings | None) -> str:
    return f"cluster {cluster.alias}: " if cluster is not None else ""


def _named(exc: BaseException) -> str | None:
    """The resource(s) an aiokafka authorization error was raised for (its first argument), quoted; None
    when the argument is a message rather than names."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, set | frozenset | list | tuple) and arg:
        return ", ".join(f"'{item}'" for item in sorted(map(str, arg)))
    if isinstance(arg, str) and arg and not any(c.isspace() for c in arg):
        return f"'{arg}'"
    return None


def denied(
    cluster: ClusterSettings | None, operation: str, resource: str, exc: BaseException
) -> AuthorizationFailed:
    """An authorization error naming the cluster, the operation and the resource."""
    return AuthorizationFailed(
        f"{_where(cluster)}not authorized to {operation} {resource} ({type(exc).__name__}): "
        "grant the operation to this client's principal (ACLs), or leave the resource out of the flow",
        code=getattr(exc, "errno", -1),
    )


def security_failure(exc: BaseException, cluster: ClusterSettings | None) -> MirrorError | None:
    """The authentication or TLS failure behind a connection error (looking at its causes), or None."""
    where = _where(cluster)
    protocol = cluster.security_protocol if cluster is not None else "?"
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ke.SaslAuthenticationFailed | ke.AuthenticationFailedError):
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): {_detail(current)}"
            )
        if isinstance(current, ke.UnsupportedSaslMechanismError):
            mechanism = cluster.sasl_mechanism if cluster is not None else "?"
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): the broker does not enable SASL "
                f"mechanism {mechanism} on this listener (sasl.mechanism)"
            )
        if isinstance(current, ke.IllegalSaslStateError | ke.AuthenticationMethodNotSupported):
            return AuthenticationFailed(
                f"{where}authentication failed ({_sasl(cluster)}): {_detail(current)}"
            )
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = (
                getattr(current, "verify_message", None) or getattr(current, "reason", None) or str(current)
            )
            hint = (
                "the certificate does not name this host: fix the broker certificate or disable the check "
                "with ssl.endpoint.identification.algorithm= (ssl_check_hostname: false)"
                if "mismatch" in str(reason)
                else "trust the CA that signed it (ssl.truststore.location / ssl.truststore.certificates / "
                "ssl_cafile)"
            )
            return TlsFailed(f"{where}TLS: the broker's certificate is not trusted ({reason}); {hint}")
        if isinstance(current, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return None  # the connection ended (a broker restarting): unavailable, not a TLS problem
        if isinstance(current, ssl.SSLError):
            reason = getattr(current, "reason", None) or str(current)
            if reason in _CLIENT_CERT_REJECTED:
                return TlsFailed(
                    f"{where}TLS: the broker rejected our client certificate ({reason}): it requires one "
                    "signed by a CA it trusts (ssl.keystore.location / ssl.keystore.key / ssl_certfile)"
                )
            if reason == "WRONG_VERSION_NUMBER":
                return TlsFailed(
                    f"{where}TLS: the listener does not speak TLS ({reason}); check security.protocol "
                    f"({protocol}) and the port"
                )
            return TlsFailed(f"{where}TLS handshake failed ({reason})")
        if isinstance(current, asyncio.IncompleteReadError) and current.partial[:1] == bytes(
            [_TLS_ALERT_RECORD]
        ):
            return TlsFailed(
                f"{where}TLS: the listener speaks TLS but security.protocol is {protocol}; "
                "use SSL or SASL_SSL for it"
            )
        current = current.__cause__ or current.__context__
    return None


def _sasl(cluster: ClusterSettings | None) -> str:
    if cluster is None:
        return "SASL"
    return f"SASL {cluster.sasl_mechanism} as user '{cluster.sasl_username}'"


def _detail(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return text or type(exc).__name__


async def diagnose(cluster: ClusterSettings, timeout: float = 5.0) -> MirrorError | None:
    """Connect (and authenticate) once to each bootstrap server, directly, to find out why clients cannot:
    the authentication or TLS failure, or None when connecting works or fails for another reason."""
    from aiokafka.conn import create_conn  # noqa: PLC0415

    try:
        kwargs = client_kwargs(cluster, "admin")
    except MirrorError as exc:
        return exc
    for server in cluster.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    client_id="mirror-diagnose",
                    request_timeout_ms=int(timeout * 1000),
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=cluster.security_protocol,
                    sasl_mechanism=kwargs.get("sasl_mechanism"),
                    sasl_plain_username=kwargs.get("sasl_plain_username"),
                    sasl_plain_password=kwargs.get("sasl_plain_password"),
                ),
                timeout,
            )
        except (ke.KafkaError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            failure = security_failure(exc, cluster)
            if failure is not None:
                return failure
            continue
        conn.close()
        return None
    return None


def _error_for(
    code: int,
    what: str,
    message: str | None,
    cluster: ClusterSettings | None = None,
    denied_as: tuple[str, str] | None = None,
) -> MirrorError | None:
    """The error of a per-resource error code; ``denied_as`` = (operation, resource) names an
    authorization failure."""
    if code == 0:
        return None
    cls = ke.for_code(code)
    if denied_as is not None and issubclass(cls, _AUTH_ERRORS):
        return denied(cluster, *denied_as, cls())
    return translate(cls(f"{what}: {message or cls.description}"), cluster)


# --- admin -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    read_only: bool
    is_sensitive: bool
    source: int  # DescribeConfigs config_source: 1 topic, 2 broker, 3 default broker, 4 static, 5 default


@dataclass(frozen=True)
class NewTopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


class Admin:
    """The admin calls `mirror` needs, with per-topic errors as values and aiokafka errors translated."""

    def __init__(self, cluster: ClusterSettings, client_id: str, timeout_ms: int = 30000) -> None:
        self.cluster = cluster
        self._timeout_ms = timeout_ms
        self._client = AIOKafkaAdminClient(
            **client_kwargs(cluster, "admin", client_id=client_id), request_timeout_ms=timeout_ms
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            async with translated(self.cluster):
                await asyncio.wait_for(self._client.start(), self._timeout_ms / 1000)
            self._started = True

    async def close(self) -> None:
        await closed(self._client.close())
        self._started = False

    async def broker_count(self) -> int:
        async with translated(self.cluster):
            meta = await self._client.describe_cluster()
        return len(meta["brokers"])

    async def list_topics(self) -> dict[str, int]:
        """Non-internal topics and their partition counts."""
        async with translated(self.cluster):
            topics = await self._client.describe_topics()
        return {
            t["topic"]: len(t["partitions"]) for t in topics if not t["is_internal"] and t["error_code"] == 0
        }

    async def describe_topic_configs(
        self, topics: Sequence[str]
    ) -> dict[str, list[ConfigEntry] | MirrorError]:
        if not topics:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        async with translated(self.cluster):
            responses = await self._client.describe_configs(resources)
        result: dict[str, list[ConfigEntry] | MirrorError] = {}
        for response in responses:
            for code, message, _rtype, name, entries in response.resources:
                err = _error_for(
                    code,
                    f"describe configs of {name}",
                    message,
                    self.cluster,
                    ("DESCRIBE_CONFIGS", f"topic '{name}'"),
                )
                result[name] = err or [
                    ConfigEntry(e[0], e[1], bool(e[2]), bool(e[4]), int(e[3])) for e in entries
                ]
        return result

    async def create_topics(self, specs: Sequence[NewTopicSpec]) -> dict[str, MirrorError | None]:
        """Create topics; per topic None (created or already there) or the error."""
        if not specs:
            return {}
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs)) for s in specs
        ]
        async with translated(self.cluster):
            response = await self._client.create_topics(new, timeout_ms=self._timeout_ms)
        result: dict[str, MirrorError | None] = {}
        for item in response.topic_errors:
            name, code = item[0], item[1]
            message = item[2] if len(item) > 2 else None
            result[name] = (
                None
                if code == ke.TopicAlreadyExistsError.errno
                else _error_for(
                    code, f"create topic {name}", message, self.cluster, ("CREATE", f"topic '{name}'")
                )
            )
        return result

    async def create_partitions(self, topic: str, total: int) -> MirrorError | None:
        try:
            async with translated(self.cluster):
                await self._client.create_partitions({topic: NewPartitions(total)})
        except KafkaRequestFailed as exc:
            if exc.code == ke.InvalidPartitionsError.errno:
                return None  # somebody else grew it already
            return exc
        return None

    async def ensure_topic(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str]
    ) -> None:
        """Create an internal topic if missing. Raises when it cannot exist (e.g. RF > brokers)."""
        errors = await self.create_topics([NewTopicSpec(name, partitions, replication_factor, configs)])
        err = errors.get(name)
        if err is not None:
            if isinstance(err, AuthorizationFailed):
                log.warning("internal topic create not authorized, assuming it exists", topic=name)
                return
            raise err


# --- data plane ------------------------------------------------------------------------------------


class _RawPartitionRecords(_fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka wraps every fetched record in a Python ``ConsumerRecord`` (a function call, a dataclass
    and a headers tuple per record: about half of `mirror`'s CPU on small records, measured). For the
    replication consumer only (marked by the `_raw_records` key deserializer), hand out the C-level
    ``DefaultRecord`` itself: it has ``offset``, ``timestamp``, ``key``, ``value`` and ``headers`` (a list),
    which is all the data path reads. CRC checks, transaction filtering and offsets are untouched."""

    def _consumer_record(self, tp: TopicPartition, record: Any) -> Any:
        if self._key_deserializer is _raw_records:
            return record
        return super()._consumer_record(tp, record)


def _raw_records(key: bytes | None) -> bytes | None:  # a marker, never called
    return key


# aiokafka 0.14 looks the class up in its fetcher module at each fetch (pinned: aiokafka==0.14.*);
# other consumers behave exactly as before.
_fetcher.PartitionRecords = _RawPartitionRecords


@dataclass(slots=True)
class SourceBatch:
    """Records fetched from one source partition, in offset order: aiokafka's C ``DefaultRecord``s
    (``offset``, ``timestamp``, ``key``, ``value``, ``headers``), see `_RawPartitionRecords`."""

    topic: str
    partition: int
    records: list[Any]

    @property
    def first_offset(self) -> int:
        return int(self.records[0].offset)

    @property
    def last_offset(self) -> int:
        return int(self.records[-1].offset)

    def value_bytes(self) -> int:
        return sum([len(v) for r in self.records if (v := r.value) is not None])


class Reader:
    """A group-less consumer with manual assignment, reading source partitions in batches."""

    def __init__(
        self, cluster: ClusterSettings, client_id: str, overrides: Mapping[str, str], isolation_level: str
    ) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "consumer", overrides, client_id=client_id)
        kwargs.setdefault("isolation_level", isolation_level)
        kwargs.setdefault("max_partition_fetch_bytes", 4 * 1024 * 1024)
        kwargs.setdefault("fetch_max_bytes", 64 * 1024 * 1024)
        kwargs["enable_auto_commit"] = False
        #: Where a partition without stored progress starts (``auto.offset.reset``, as Java's consumer).
        self.start_at: str = str(kwargs.pop("auto_offset_reset", "earliest"))
        # Never let aiokafka jump by itself when a position is out of range: records deleted ahead of
        # us would be skipped silently. `fetch` raises SourceOutOfRange; the task reports and re-seeks.
        kwargs["auto_offset_reset"] = "none"
        kwargs["group_id"] = None
        kwargs["key_deserializer"] = _raw_records  # records as the C DefaultRecord (_RawPartitionRecords)
        self._consumer = AIOKafkaConsumer(**kwargs)

    async def start(self) -> None:
        async with translated(self.cluster):
            await self._consumer.start()

    async def close(self) -> None:
        await closed(self._consumer.stop())

    async def assign(self, positions: Mapping[tuple[str, int], int | None]) -> None:
        """Assign exactly these partitions; seek each to its position (None: where ``start_at`` says,
        the earliest offset by default)."""
        tps = {TopicPartition(t, p): pos for (t, p), pos in positions.items()}
        cluster = self._consumer._client.cluster
        if any(tp.partition not in (cluster.partitions_for_topic(tp.topic) or ()) for tp in tps):
            # new topics or partitions: without this the consumer may not fetch them before its next
            # periodic metadata refresh (5 minutes by default)
            async with translated(self.cluster):
                await self._consumer._client.force_metadata_update()
        self._consumer.assign(list(tps))
        unknown = [tp for tp, pos in tps.items() if pos is None]
        for tp, pos in tps.items():
            if pos is not None:
                self._consumer.seek(tp, pos)
        if unknown:
            async with translated(self.cluster):
                if self.start_at == "latest":
                    await self._consumer.seek_to_end(*unknown)
                else:
                    await self._consumer.seek_to_beginning(*unknown)

    def seek(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Move assigned partitions to these offsets (the next fetch reads from there)."""
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def pause(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Stop fetching these assigned partitions (until the next `assign`)."""
        self._consumer.pause(*(TopicPartition(t, p) for t, p in partitions))

    async def beginning_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with translated(self.cluster):
            result = await asyncio.wait_for(
                self._consumer.beginning_offsets([TopicPartition(t, p) for t, p in partitions]), 30
            )
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    async def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        async with translated(self.cluster):
            result = await asyncio.wait_for(
                self._consumer.end_offsets([TopicPartition(t, p) for t, p in partitions]), 30
            )
        return {(tp.topic, tp.partition): off for tp, off in result.items()}

    def highwater(self, topic: str, partition: int) -> int | None:
        hw: int | None = self._consumer.highwater(TopicPartition(topic, partition))
        return hw

    async def fetch(self, timeout_ms: int) -> list[SourceBatch]:
        try:
            async with translated(self.cluster):
                data = await self._consumer.getmany(timeout_ms=timeout_ms)
        except KafkaRequestFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ke.OffsetOutOfRangeError) and cause.args and isinstance(cause.args[0], dict):
                positions = {(tp.topic, tp.partition): int(off) for tp, off in cause.args[0].items()}
                raise SourceOutOfRange(positions) from cause
            if not isinstance(exc, AuthorizationFailed):
                raise

            if isinstance(cause, ke.TopicAuthorizationFailedError) and _named(cause) is not None:
                raise denied(self.cluster, "READ", f"topic {_named(cause)}", cause) from cause
            raise
        return [SourceBatch(tp.topic, tp.partition, recs) for tp, recs in data.items() if recs]


@dataclass(slots=True)
class Ack:
    """The target's answer for one produced batch."""

    base_offset: int
    count: int


class Writer:
    """A producer that writes whole batches to fixed partitions of the target (no per-record send)."""

    def __init__(
        self,
        cluster: ClusterSettings,
        client_id: str,
        overrides: Mapping[str, str],
        transactional_id: str | None = None,
    ) -> None:
        self.cluster = cluster
        kwargs = client_kwargs(cluster, "producer", overrides, client_id=client_id)
        kwargs.setdefault("max_batch_size", 1024 * 1024)
        kwargs.setdefault("max_request_size", 4 * 1024 * 1024)
        kwargs.setdefault("enable_idempotence", True)
        kwargs.setdefault("acks", "all")
        kwargs.setdefault("request_timeout_ms", 30000)
        if transactional_id is not None:
            kwargs["transactional_id"] = transactional_id
        self._producer = AIOKafkaProducer(**kwargs)

    async def start(self) -> None:
        async with translated(self.cluster):
            await self._producer.start()

    async def close(self, timeout: float = 3.0) -> None:
        """Stop, delivering what is queued for at most ``timeout`` seconds (then it is dropped).

        aiokafka's ``stop()`` cut short by the timeout leaves its sender running: it would go on
        retrying and deliver stale batches later, behind the back of the task's next session. So the
        sender and the connections are ended here, whatever happened to ``stop()``."""
        try:
            await closed(self._producer.stop(), timeout)
        finally:  # also when the close itself is cancelled (a bounded task stop)
            sender = getattr(self._producer, "_sender", None)
            task = getattr(sender, "sender_task", None)
            if task is not None and not task.done():
                task.cancel()
                log.warning("producer not closed in time; its unsent batches are dropped", timeout_s=timeout)
                await closed(self._producer.client.close(), 1.0)

    async def send_records(
        self,
        topic: str,
        partition: int,
        records: Sequence[Any],
        per_batch: int = 0,
        max_batches: int = 0,
    ) -> list[tuple[asyncio.Future[Any], int, int]]:
        """Copy records (key, value, headers, timestamp) into as few target batches as fit, in order;
        with ``per_batch`` > 0, at most that many records per batch; with ``max_batches`` > 0, only the
        records that fit in that many batches (the caller sends the rest later).

        Returns one (delivery future, index of its first record, record count) per target batch;
        await the futures with `ack_of`.
        """
        futures: list[tuple[asyncio.Future[Any], int, int]] = []
        i, n = 0, len(records)
        await self._known_partition(topic, partition)
        async with translated(self.cluster):
            while i < n and (max_batches <= 0 or len(futures) < max_batches):
                batch = self._producer.create_batch()
                # The C record builder directly (BatchBuilder.append adds ~1 us/record of Python):
                # it wants headers as a list and relative offsets from 0.
                raw_append = batch._builder.append
                start = i
                end = min(n, start + per_batch) if per_batch > 0 else n
                while i < end:
                    r = records[i]
                    h = r.headers
                    if h.__class__ is not list:  # fetched records have lists already
                        h = list(h)
                    if raw_append(i - start, r.timestamp, r.key, r.value, h) is None:
                        break
                    i += 1
                batch._relative_offset = i - start
                batch.close()
                fut = await self._producer.send_batch(batch, topic, partition=partition)
                futures.append((fut, start, i - start))
        return futures

    async def _known_partition(self, topic: str, partition: int) -> None:
        """The producer only sends to partitions in its metadata: refresh it when a partition is new."""
        client = self._producer.client
        known = client.cluster.partitions_for_topic(topic)
        if known is not None and partition in known:
            return
        async with translated(self.cluster):
            await client.force_metadata_update()
        known = client.cluster.partitions_for_topic(topic)
        if topic in client.cluster.unauthorized_topics:
            raise denied(
                self.cluster, "DESCRIBE/WRITE", f"topic '{topic}'", ke.TopicAuthorizationFailedError()
            )
        if known is None or partition not in known:
            raise KafkaRequestFailed(
                f"partition {partition} of {topic} is not (yet) in the target's metadata"
            )

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[Any]:
        """Queue one record (for internal topics, not the data path); returns its delivery future."""
        async with translated(self.cluster):
            fut: asyncio.Future[Any] = await self._producer.send(
                topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms
            )
        return fut

    async def flush(self) -> None:
        async with translated(self.cluster):
            await self._producer.flush()

    # Transactions (exactly-once mode; needs ``transactional_id``). Starting the producer already
    # fenced every older producer with the same transactional id.
    async def begin_transaction(self) -> None:
        async with translated(self.cluster):
            await self._producer.begin_transaction()

    async def commit_transaction(self) -> None:
        async with translated(self.cluster):
            await self._producer.commit_transaction()

    async def abort_transaction(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.abort_transaction(), 10)


class InvalidRecordError(ke.BrokerResponseError):  # type: ignore[misc]
    """INVALID_RECORD (87): the broker refused a record of the batch (say, a null key on a compacted
    topic). aiokafka 0.14 has no class for it and would report a retriable UnknownError."""

    errno = 87
    message = "INVALID_RECORD"
    description = "This record has failed the validation on broker and hence will be rejected."
    retriable = False


ke.kafka_errors.setdefault(InvalidRecordError.errno, InvalidRecordError)

#: Produce errors that mean the target will never accept this batch as it is: retrying is useless and
#: skipping it would lose records (`RecordRejected`).
_REFUSED = (
    InvalidRecordError,
    ke.InvalidTimestampError,
    ke.MessageSizeTooLargeError,
    ke.RecordListTooLargeError,
    ke.RecordTooLargeError,
    ke.CorruptRecordException,
    ke.PolicyViolationError,
    ke.UnsupportedForMessageFormatError,
    ke.InvalidTopicError,
)


#: Refusals for the batch's size rather than for one of its records: smaller batches may pass.
_TOO_LARGE = (ke.MessageSizeTooLargeError, ke.RecordListTooLargeError)


async def ack_of(future: asyncio.Future[Any]) -> Ack:
    """Wait for a batch future from `Writer.send_records`; errors are translated (a batch the target
    refuses for good is a `RecordRejected`)."""
    try:
        meta = await future
    except _REFUSED as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'description', '') or exc}"
        raise RecordRejected(reason, too_large=isinstance(exc, _TOO_LARGE)) from exc
    except ke.TopicAuthorizationFailedError as exc:
        if _named(exc) is None:
            raise translate(exc) from exc
        raise denied(None, "WRITE to", f"topic {_named(exc)}", exc) from exc
    except (ke.KafkaError, OSError, TimeoutError) as exc:
        raise translate(exc) from exc
    return Ack(int(meta.offset), 0)


async def read_compacted(
    cluster: ClusterSettings, topic: str, client_id: str, timeout: float = 60.0
) -> dict[bytes, bytes | None]:
    """Read a whole (compacted) topic from the beginning to its current end: the last value per key.

    Committed records only, up to the high watermark, not merely to the last stable offset: a
    transaction still open (another task's, or a zombie's not fenced yet) holds the LSO back, and
    committed records behind it (say, this task's own last progress) would be missed. So this waits
    until every transaction open when it started has ended."""
    kwargs = client_kwargs(cluster, "consumer", client_id=client_id)
    # the cluster's consumer overrides must not change what this reader is (from the start, committed)
    kwargs.update(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer = AIOKafkaConsumer(**{**kwargs, "isolation_level": "read_committed"})
    ends = AIOKafkaConsumer(**{**kwargs, "isolation_level": "read_uncommitted"})
    state: dict[bytes, bytes | None] = {}
    async with translated(cluster):
        try:
            await consumer.start()
            await ends.start()
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return state
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await asyncio.wait_for(ends.end_offsets(tps), timeout)  # high watermarks
            pending = {tp for tp in tps if end[tp] > 0}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while pending:
                if loop.time() > deadline:
                    raise KafkaUnavailable(
                        f"timed out reading {topic} to its end (a transaction on it stays open?)"
                    )
                data = await consumer.getmany(timeout_ms=500)
                for recs in data.values():
                    for r in recs:
                        if r.key is not None:
                            state[r.key] = r.value
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
        finally:
            await closed(ends.stop())
            await closed(consumer.stop())
    return state
