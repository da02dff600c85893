"""`Admin`: the admin calls `mirror` needs, with per-topic errors as values and aiokafka errors translated.

Every raw protocol request (`mirror.kafka.groups`, `mirror.kafka.configs`) goes through one door,
`Admin.raw_request`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as ke
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mirror.config import ClusterSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed, MirrorError
from mirror.kafka import _internals
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import error_for_code, errors_translated

log = structlog.get_logger(__name__)


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
        self._aiokafka = AIOKafkaAdminClient(
            **client_kwargs(cluster, "admin", client_id=client_id), request_timeout_ms=timeout_ms
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            async with errors_translated(self.cluster):
                await asyncio.wait_for(self._aiokafka.start(), self._timeout_ms / 1000)
            self._started = True

    async def close(self) -> None:
        await close_within(self._aiokafka.close())
        self._started = False

    async def raw_request(self, request: Any, node_id: int | None = None) -> Any:
        """The one door for raw protocol requests: send ``request`` (an `aiokafka.protocol` request) to
        ``node_id``, or to any broker, within this admin's timeout; its decoded response. Errors are
        aiokafka's, untranslated: each caller maps them (and the response's error codes) its own way."""
        async with asyncio.timeout(self._timeout_ms / 1000):
            return await _internals.admin_request(self._aiokafka, request, node_id)

    async def find_coordinator(self, group: str) -> int:
        """The node id of ``group``'s coordinator, within this admin's timeout (errors untranslated)."""
        async with asyncio.timeout(self._timeout_ms / 1000):
            return int(await self._aiokafka.find_coordinator(group))

    async def broker_ids(self) -> list[int]:
        """The node ids of the cluster's brokers (metadata refreshed when none is known yet), within this
        admin's timeout (errors untranslated)."""
        client = _internals.kafka_client(self._aiokafka)
        async with asyncio.timeout(self._timeout_ms / 1000):
            brokers = [b.nodeId for b in client.cluster.brokers()]
            if not brokers:
                await client.force_metadata_update()
                brokers = [b.nodeId for b in client.cluster.brokers()]
        return brokers

    async def broker_count(self) -> int:
        async with errors_translated(self.cluster):
            meta = await self._aiokafka.describe_cluster()
        return len(meta["brokers"])

    async def list_topics(self) -> dict[str, int]:
        """Non-internal topics and their partition counts."""
        async with errors_translated(self.cluster):
            topics = await self._aiokafka.describe_topics()
        return {
            t["topic"]: len(t["partitions"]) for t in topics if not t["is_internal"] and t["error_code"] == 0
        }

    async def describe_topic_configs(
        self, topics: Sequence[str]
    ) -> dict[str, list[ConfigEntry] | MirrorError]:
        if not topics:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        async with errors_translated(self.cluster):
            responses = await self._aiokafka.describe_configs(resources)
        result: dict[str, list[ConfigEntry] | MirrorError] = {}
        for response in responses:
            for code, message, _rtype, name, entries in response.resources:
                err = (
                    error_for_code(
                        code,
                        f"describe configs of {name}",
                        message,
                        cluster=self.cluster,
                        denied_as=("DESCRIBE_CONFIGS", f"topic '{name}'"),
                    )
                    if code
                    else None
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
        async with errors_translated(self.cluster):
            response = await self._aiokafka.create_topics(new, timeout_ms=self._timeout_ms)
        result: dict[str, MirrorError | None] = {}
        for item in response.topic_errors:
            name, code = item[0], item[1]
            message = item[2] if len(item) > 2 else None
            fine = code in (0, ke.TopicAlreadyExistsError.errno)
            result[name] = None if fine else self._topic_error(code, "CREATE", name, message)
        return result

    def _topic_error(self, code: int, operation: str, topic: str, message: str | None) -> MirrorError:
        """A per-topic error code of an ``operation`` (``CREATE``, ``DELETE``) as a `MirrorError`."""
        return error_for_code(
            code,
            f"{operation.lower()} topic {topic}",
            message,
            cluster=self.cluster,
            denied_as=(operation, f"topic '{topic}'"),
        )

    async def create_partitions(self, topic: str, total: int) -> MirrorError | None:
        try:
            async with errors_translated(self.cluster):
                await self._aiokafka.create_partitions({topic: NewPartitions(total)})
        except KafkaRequestFailed as exc:
            if exc.code == ke.InvalidPartitionsError.errno:
                return None  # somebody else grew it already
            return exc
        return None

    async def delete_topic(self, name: str) -> MirrorError | None:
        """Delete a topic: None when deleted (or already gone), else the error."""
        async with errors_translated(self.cluster):
            response = await self._aiokafka.delete_topics([name], timeout_ms=self._timeout_ms)
        for item in response.topic_error_codes:
            topic, code = item[0], item[1]
            if topic == name and code not in (0, ke.UnknownTopicOrPartitionError.errno):
                return self._topic_error(code, "DELETE", name, None)
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
