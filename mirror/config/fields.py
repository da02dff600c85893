"""Field types of the models: validators and the words (:class:`Allowed`) error messages use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
)

from mirror.config.routing import ALIAS_ALLOWED
from mirror.mm2.filters import pattern_list
from mirror.mm2.java_regex import java_regex

DEFAULT_REPLICATION_POLICY = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
IDENTITY_REPLICATION_POLICY = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"


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


def upper_text(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def lower_text(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Alias = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"), Allowed(ALIAS_ALLOWED)]
Regexes = Annotated[
    list[str],
    BeforeValidator(_split_list),
    AfterValidator(_java_regexes),
    Allowed("a comma-separated list of Java regular expressions"),
]
Names = Annotated[list[str], BeforeValidator(_split_list), Allowed("a comma-separated list")]
HostPorts = Annotated[
    list[str],
    BeforeValidator(_split_list),
    AfterValidator(_host_ports),
    Allowed("a comma-separated list of host:port"),
]
ReplicationFactor = Annotated[
    int, AfterValidator(_replication_factor), Allowed("an integer >= 1, or -1 for the broker default")
]
PolicyClass = Annotated[
    str,
    AfterValidator(_policy_class),
    Allowed(f"{DEFAULT_REPLICATION_POLICY} or {IDENTITY_REPLICATION_POLICY}"),
]
ClientProps = Annotated[
    dict[str, str], BeforeValidator(_client_props), Allowed("a mapping of Java client keys to values")
]
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0)]
NonEmpty = Annotated[str, Field(min_length=1), Allowed("a non-empty string")]
