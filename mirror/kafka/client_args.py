"""aiokafka keyword arguments for one client: connection, TLS, SASL and the Java client keys of its role.

Which Java client keys are honoured, and as which aiokafka argument, is the registry of
`mirror.config.client_keys` (also what `mirror validate` checks and docs/configuration.md lists)."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient

from mirror.config import ClusterSettings
from mirror.config.client_keys import Role, client_arguments
from mirror.kafka import tls


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
    kwargs.update(client_arguments(role, {**getattr(cluster, role), **overrides}))
    return kwargs


#: The connection arguments `AIOKafkaClient` takes .
_CONNECTION_KEYS = frozenset(
    name for name in inspect.signature(AIOKafkaClient.__init__).parameters if name not in ("self", "loop")
)


def protocol_client(
    cluster: ClusterSettings, role: Role, overrides: Mapping[str, str] = {}, client_id: str | None = None
) -> tuple[AIOKafkaClient, dict[str, Any]]:
    """A connection and metadata client (aiokafka's public `AIOKafkaClient`, not started) for a client
    that speaks the protocol itself (`mirror.kafka.fetcher`, `mirror.kafka.producer`), and the rest of
    its `client_kwargs` whole (the role's options under aiokafka's names: acks, batch and fetch sizes...)."""
    kwargs = client_kwargs(cluster, role, overrides, client_id)
    return AIOKafkaClient(**{k: v for k, v in kwargs.items() if k in _CONNECTION_KEYS}), kwargs
