"""aiokafka keyword arguments for one client: the Java client keys honoured per role, TLS and SASL."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Literal

from mirror.config import ClusterSettings
from mirror.kafka import tls

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
