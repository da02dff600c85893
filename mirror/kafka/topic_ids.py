"""Topics with their ids: Metadata v10-v12, which aiokafka 0.14 lacks (docs/guarantees.md, "Topic ids").

A topic's id is a 16-byte UUID the cluster gives it when it is created; a topic deleted and created again
under the same name gets a new one. Ids are shown as Kafka's tools print them: URL-safe base64 without
padding (22 characters). A broker too old for Metadata v10 (Kafka < 2.8) gives no ids: every topic is
then listed with ``topic_id=None``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import aiokafka.errors as ke
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from mirror.kafka.admin import Admin
from mirror.kafka.errors import as_mirror_error

__all__ = ["TopicDescription", "describe_topics", "format_topic_id"]

_METADATA = 3
_ZERO_ID = bytes(16)


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    """Kafka's ``uuid`` field: 16 bytes, most significant first."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding uuid")
        return value


def _response_schema(cluster_operations: bool) -> Schema:
    topic_fields: tuple[tuple[str, Any], ...] = (
        ("error_code", Int16),
        ("name", CompactString("utf-8")),
        ("topic_id", _Uuid),
        ("is_internal", Boolean),
        (
            "partitions",
            CompactArray(
                ("error_code", Int16),
                ("partition_index", Int32),
                ("leader_id", Int32),
                ("leader_epoch", Int32),
                ("replica_nodes", CompactArray(Int32)),
                ("isr_nodes", CompactArray(Int32)),
                ("offline_replicas", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("topic_authorized_operations", Int32),
        ("tags", TaggedFields),
    )
    fields: list[tuple[str, Any]] = [
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(*topic_fields)),
    ]
    if cluster_operations:
        fields.append(("cluster_authorized_operations", Int32))
    fields.append(("tags", TaggedFields))
    return Schema(*fields)


class _MetadataResponse_v10(Response):  # type: ignore[misc]
    API_KEY = _METADATA
    API_VERSION = 10
    SCHEMA = _response_schema(cluster_operations=True)


class _MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = _METADATA
    API_VERSION = 12
    SCHEMA = _response_schema(cluster_operations=False)


def _request_schema(cluster_operations: bool) -> Schema:
    fields: list[tuple[str, Any]] = [
        (
            "topics",
            CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
        ),
        ("allow_auto_topic_creation", Boolean),
    ]
    if cluster_operations:
        fields.append(("include_cluster_authorized_operations", Boolean))
    fields += [("include_topic_authorized_operations", Boolean), ("tags", TaggedFields)]
    return Schema(*fields)


class _MetadataRequest_v10(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = _METADATA
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = _request_schema(cluster_operations=True)


class _MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = _METADATA
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = _request_schema(cluster_operations=False)


class _AllTopicsMetadata(Request[_MetadataRequest_v10 | _MetadataRequest_v12]):  # type: ignore[misc]
    """Metadata of every topic (a null topic list), never creating one."""

    API_KEY = _METADATA

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION >= 11:
            return request_struct_class(None, False, False, {})
        return request_struct_class(None, False, False, False, {})


@dataclass(frozen=True)
class TopicDescription:
    """A topic as the cluster describes it now."""

    partitions: int
    topic_id: str | None  # None: the broker gives no ids (older than Kafka 2.8)


def format_topic_id(raw: bytes) -> str:
    """A topic id as Kafka's tools print it: URL-safe base64 of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def describe_topics(admin: Admin) -> dict[str, TopicDescription]:
    """Every non-internal topic of ``admin``'s cluster with its partition count and id (`mirror.errors`
    raised, as `Admin.list_topics` does). A broker without Metadata v10 falls back to the names alone."""
    try:
        response = await admin.raw_request(_AllTopicsMetadata())
    except (ke.IncompatibleBrokerVersion, NotImplementedError):
        return {name: TopicDescription(n, None) for name, n in (await admin.list_topics()).items()}
    except (ke.KafkaError, OSError, TimeoutError) as exc:
        raise as_mirror_error(exc) from exc
    out: dict[str, TopicDescription] = {}
    for code, name, raw_id, internal, partitions, *_rest in response.topics:
        if code == 0 and name is not None and not internal:
            out[name] = TopicDescription(
                len(partitions), None if raw_id == _ZERO_ID else format_topic_id(raw_id)
            )
    return out
