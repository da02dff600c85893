"""Consumer-group admin calls aiokafka lacks or gets wrong, and a reader for MM2's one-partition topics.

- `Groups` lists consumer groups, describes one group (with a DescribeGroups v3 response schema that is
  right, unlike aiokafka 0.14's), fetches committed offsets with per-partition errors as values (aiokafka
  raises the top-level code instead) and alters group offsets with a raw OffsetCommit (generation -1,
  member ""), which the broker only accepts for groups without active members. That refusal comes back as
  `AlterResult.group_active`, never as an exception.
- `PartitionTail` reads partition 0 of a topic (offset syncs, checkpoints) from the beginning to its end
  and then keeps tailing it; `read_partition` reads it once.

Broker error codes become `mirror.errors` types (`mirror.kafka.errors.error_for_code`); nothing above
sees aiokafka.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiokafka.errors as ke
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.protocol.admin import (
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
    DescribeGroupsRequest_v3,
    DescribeGroupsResponse_v3,
    ListGroupsRequest,
)
from aiokafka.protocol.api import Request, RequestStruct
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest

from mirror.config import ClusterSettings
from mirror.errors import KafkaRequestFailed, KafkaUnavailable, MirrorError
from mirror.kafka import _internals
from mirror.kafka.admin import Admin
from mirror.kafka.client_args import client_kwargs
from mirror.kafka.closing import close_within
from mirror.kafka.errors import error_for_code, errors_translated
from mirror.types import TP

__all__ = [
    "CONSUMER_PROTOCOL_TYPES",
    "AlterResult",
    "CommittedOffset",
    "GroupDescription",
    "GroupMember",
    "GroupOffsets",
    "Groups",
    "PartitionTail",
    "TailRecord",
    "read_partition",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: ListGroups protocol types of consumer groups (Java's `ConsumerGroupListing`): "" is a group that only
#: stores offsets (standalone commits, like ours), "consumer" one that uses the group protocol.
CONSUMER_PROTOCOL_TYPES: Final = ("consumer", "")
#: DescribeGroups states of a group whose members are (or are becoming) active.
ACTIVE_STATES: Final = frozenset(
    {"Stable", "PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling"}
)

_NONE = 0
_GROUP_ID_NOT_FOUND = 69
# The coordinator moved, is loading or is not there yet: find it again and retry.
_COORDINATOR_ERRORS: Final = frozenset(
    {
        ke.GroupLoadInProgressError.errno,  # 14
        ke.GroupCoordinatorNotAvailableError.errno,  # 15
        ke.NotCoordinatorForGroupError.errno,  # 16
    }
)
# A standalone commit (generation -1, member "") to a group with live members (classic protocol), or
# STALE_MEMBER_EPOCH (113) from a KIP-848 consumer group.
_ACTIVE_GROUP_ERRORS: Final = frozenset(
    {
        ke.IllegalGenerationError.errno,  # 22
        ke.UnknownMemberIdError.errno,  # 25
        ke.RebalanceInProgressError.errno,  # 27
        82,  # FENCED_INSTANCE_ID
        113,  # STALE_MEMBER_EPOCH
    }
)
_ATTEMPTS = 4


# --- DescribeGroups with the v3 response schema aiokafka 0.14 gets wrong -------------------------------


class _DescribeGroupsRequestV3(RequestStruct):  # type: ignore[misc]
    """aiokafka's v3 struct decodes the answer with the v2 schema, which lacks `authorized_operations`."""

    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = DescribeGroupsRequest_v3.SCHEMA


_DescribeGroupsStruct = (
    DescribeGroupsRequest_v0 | DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2 | _DescribeGroupsRequestV3
)


class _DescribeGroups(Request[_DescribeGroupsStruct]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, groups: Sequence[str]) -> None:
        self._groups = list(groups)

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(self._groups, False)
        return request_struct_class(self._groups)


# --- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    client_host: str
    assignment: tuple[TP, ...] = ()  # the partitions assigned to it (consumer protocol groups)


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """One group as DescribeGroups sees it. A group that does not exist is state "Dead" with no members."""

    group_id: str
    state: str
    protocol_type: str
    members: tuple[GroupMember, ...] = ()

    @property
    def exists(self) -> bool:
        return self.state not in ("Dead", "")

    @property
    def is_active(self) -> bool:
        """Has members (or is rebalancing): offsets must not be changed from outside."""
        return bool(self.members) or self.state in ACTIVE_STATES

    @property
    def is_empty(self) -> bool:
        """Exists, without members: Java MM2 syncs offsets into such groups."""
        return self.state == "Empty" and not self.members


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    metadata: str = ""


@dataclass(frozen=True, slots=True)
class GroupOffsets:
    """A group's committed offsets; partitions the broker answered with an error are in `errors`."""

    offsets: dict[TP, CommittedOffset] = field(default_factory=dict)
    errors: dict[TP, MirrorError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlterResult:
    """The outcome of `Groups.alter_offsets`.

    `group_active`: the broker refused because the group has active members (nothing was changed);
    otherwise `committed` holds the partitions written and `errors` those refused one by one.
    """

    committed: dict[TP, int] = field(default_factory=dict)
    errors: dict[TP, MirrorError] = field(default_factory=dict)
    group_active: bool = False


# --- group admin ---------------------------------------------------------------------------------------


class Groups:
    """Consumer-group requests over an `Admin`; coordinators are cached per group and found again on
    NOT_COORDINATOR and friends (each call retries a few times before it raises)."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self._coordinators: dict[str, int] = {}

    async def _send(self, request: Any, node_id: int | None) -> Any:
        async with errors_translated():
            return await self.admin.raw_request(request, node_id)

    async def coordinator(self, group: str) -> int:
        node = self._coordinators.get(group)
        if node is None:
            async with errors_translated():
                node = await self.admin.find_coordinator(group)
            self._coordinators[group] = node
        return node

    async def _with_coordinator(
        self, group: str, call: Callable[[int], Awaitable[T]], retry: Callable[[T], bool]
    ) -> T:
        """Run `call(coordinator)`; find the coordinator again and retry while `retry(result)` or the
        coordinator cannot be reached."""
        delay = 0.1
        for attempt in range(_ATTEMPTS):
            last = attempt == _ATTEMPTS - 1
            try:
                result = await call(await self.coordinator(group))
            except (KafkaUnavailable, KafkaRequestFailed) as exc:
                self._coordinators.pop(group, None)
                code = getattr(exc, "code", None)
                if last or not (isinstance(exc, KafkaUnavailable) or code in _COORDINATOR_ERRORS):
                    raise
            else:
                if last or not retry(result):
                    return result
                self._coordinators.pop(group, None)
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def list_consumer_groups(self) -> list[str]:
        """Every consumer group of the cluster (ListGroups on each broker), sorted."""
        async with errors_translated():
            brokers = await self.admin.broker_ids()
        responses = await asyncio.gather(*(self._send(ListGroupsRequest(), b) for b in brokers))
        found: set[str] = set()
        for response in responses:
            if response.error_code:
                raise error_for_code(response.error_code, "list consumer groups")
            found.update(g for g, protocol in response.groups if protocol in CONSUMER_PROTOCOL_TYPES)
        return sorted(found)

    async def describe(self, group: str) -> GroupDescription:
        """State and members of one group ("Dead" with no members if it does not exist)."""

        async def call(node: int) -> GroupDescription | MirrorError:
            response = await self._send(_DescribeGroups([group]), node)
            for item in response.groups:
                code, group_id, state, protocol_type, _protocol, members = item[:6]
                if group_id != group:
                    continue
                if code == _GROUP_ID_NOT_FOUND:
                    return GroupDescription(group, "Dead", "")
                if code:
                    return error_for_code(code, f"describe group {group}")
                return GroupDescription(
                    group,
                    state,
                    protocol_type,
                    tuple(GroupMember(m[0], m[1], m[2], _assigned(protocol_type, m[4])) for m in members),
                )
            return GroupDescription(group, "Dead", "")

        result = await self._with_coordinator(group, call, _retriable_coordinator_error)
        if isinstance(result, MirrorError):
            raise result
        return result

    async def fetch_offsets(self, group: str, partitions: Sequence[TP] | None = None) -> GroupOffsets:
        """Committed offsets of `group` (all of them, or those of `partitions`).

        A request-level error raises; per-partition errors are returned in `GroupOffsets.errors`.
        Partitions without a committed offset are left out.
        """
        wanted: list[tuple[str, list[int]]] | None = None
        if partitions:
            by_topic: dict[str, list[int]] = defaultdict(list)
            for topic, partition in partitions:
                by_topic[topic].append(partition)
            wanted = list(by_topic.items())

        async def call(node: int) -> GroupOffsets | MirrorError:
            response = await self._send(OffsetFetchRequest(group, wanted), node)
            top = getattr(response, "error_code", _NONE)
            if top == _GROUP_ID_NOT_FOUND:
                return GroupOffsets()
            if top:
                return error_for_code(top, f"fetch offsets of group {group}")
            result = GroupOffsets()
            for topic, parts in response.topics:
                for partition, offset, metadata, code in parts:
                    tp = (topic, partition)
                    if code:
                        result.errors[tp] = error_for_code(
                            code, f"fetch offset of group {group} on {topic}-{partition}"
                        )
                    elif offset >= 0:
                        result.offsets[tp] = CommittedOffset(offset, metadata or "")
            return result

        def retry(result: GroupOffsets | MirrorError) -> bool:
            if isinstance(result, GroupOffsets):
                return any(_code(e) in _COORDINATOR_ERRORS for e in result.errors.values())
            return _retriable_coordinator_error(result)

        result = await self._with_coordinator(group, call, retry)
        if isinstance(result, MirrorError):
            raise result
        return result

    async def alter_offsets(self, group: str, offsets: Mapping[TP, tuple[int, str]]) -> AlterResult:
        """Commit `offsets` ((offset, metadata) per partition) for `group` as an admin does: generation
        -1, member "". The broker accepts this only while the group has no active members; otherwise the
        result says `group_active` and nothing changed."""
        if not offsets:
            return AlterResult()
        by_topic: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for (topic, partition), (offset, metadata) in offsets.items():
            by_topic[topic].append((partition, offset, metadata))
        request = OffsetCommitRequest(
            group,
            OffsetCommitRequest.DEFAULT_GENERATION_ID,
            "",
            OffsetCommitRequest.DEFAULT_RETENTION_TIME,
            list(by_topic.items()),
        )

        async def call(node: int) -> dict[TP, int]:
            response = await self._send(request, node)
            return {(t, p): code for t, parts in response.topics for p, code in parts}

        def retry(codes: dict[TP, int]) -> bool:
            return any(code in _COORDINATOR_ERRORS for code in codes.values())

        codes = await self._with_coordinator(group, call, retry)
        if any(code in _ACTIVE_GROUP_ERRORS for code in codes.values()):
            return AlterResult(group_active=True)
        result = AlterResult()
        for tp, code in codes.items():
            if code:
                result.errors[tp] = error_for_code(code, f"commit offset of group {group} on {tp[0]}-{tp[1]}")
            else:
                result.committed[tp] = offsets[tp][0]
        return result


def _assigned(protocol_type: str, raw: bytes | None) -> tuple[TP, ...]:
    """The partitions in a member's assignment; () for other protocols or bytes that do not parse."""
    if protocol_type != "consumer" or not raw:
        return ()
    try:
        assignment = ConsumerProtocolMemberAssignment.decode(raw)
    except Exception:  # noqa: BLE001  (another client's format: nothing we can show)
        return ()
    return tuple(sorted((topic, p) for topic, partitions in assignment.assignment for p in partitions))


def _code(exc: MirrorError) -> int | None:
    return getattr(exc, "code", None)


def _retriable_coordinator_error(result: object) -> bool:
    return isinstance(result, MirrorError) and _code(result) in _COORDINATOR_ERRORS


# --- one-partition topic reader ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailRecord:
    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The value of the last header called `name`, None if there is none."""
        return next((v for k, v in reversed(self.headers) if k == name), None)


class PartitionTail:
    """Reads one partition (default 0) from its beginning; `read_to_end` then `poll` to keep tailing.

    A topic that does not exist yet reads as empty; `poll` picks it up (from its beginning) once it
    appears. Reads with `read_committed`, so aborted transactional writes are never seen.
    """

    def __init__(
        self,
        cluster: ClusterSettings,
        topic: str,
        client_id: str,
        partition: int = 0,
        overrides: Mapping[str, str] = {},
    ) -> None:
        kwargs = client_kwargs(cluster, "consumer", overrides, client_id=client_id)
        kwargs.update(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self.topic = topic
        self._tp = TopicPartition(topic, partition)
        self._consumer = AIOKafkaConsumer(**kwargs)
        self._assigned = False

    async def start(self) -> None:
        async with errors_translated():
            await self._consumer.start()

    async def close(self) -> None:
        await close_within(self._consumer.stop(), 10)  # also after a failed or cancelled start

    async def __aenter__(self) -> PartitionTail:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_assigned(self) -> bool:
        if self._assigned:
            return True
        async with errors_translated():
            await _internals.kafka_client(self._consumer).force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions or self._tp.partition not in partitions:
                return False
            self._consumer.assign([self._tp])
            await self._consumer.seek_to_beginning(self._tp)
        self._assigned = True
        return True

    @property
    def exists(self) -> bool:
        """Whether the topic was found (and assigned) so far."""
        return self._assigned

    async def read_to_end(self, timeout: float = 60.0) -> list[TailRecord]:
        """Records from the current position up to the partition's end as of now (all of them the first
        time). Raises `KafkaUnavailable` when no record arrives for `timeout` seconds before the end."""
        if not await self._ensure_assigned():
            return []
        records: list[TailRecord] = []
        async with errors_translated():
            async with asyncio.timeout(timeout):
                end = (await self._consumer.end_offsets([self._tp]))[self._tp]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while await self._consumer.position(self._tp) < end:
                if loop.time() > deadline:
                    raise KafkaUnavailable(f"timed out reading {self.topic} to its end")
                batch = self._convert(await self._consumer.getmany(self._tp, timeout_ms=500))
                if batch:
                    records += batch
                    deadline = loop.time() + timeout  # progress: a big topic may take long
        return records

    async def poll(self, timeout_ms: int = 1000) -> list[TailRecord]:
        """The next records (possibly none after `timeout_ms`)."""
        if not await self._ensure_assigned():
            await asyncio.sleep(timeout_ms / 1000)
            return []
        async with errors_translated():
            return self._convert(await self._consumer.getmany(self._tp, timeout_ms=timeout_ms))

    @staticmethod
    def _convert(data: Mapping[Any, list[Any]]) -> list[TailRecord]:
        return [
            TailRecord(r.key, r.value, r.offset, r.timestamp, tuple(r.headers or ()))
            for recs in data.values()
            for r in recs
        ]


async def read_partition(
    cluster: ClusterSettings, topic: str, client_id: str, timeout: float = 60.0, partition: int = 0
) -> list[TailRecord] | None:
    """Every record of one partition, from its beginning to its current end; None if the topic is missing."""
    async with PartitionTail(cluster, topic, client_id, partition) as tail:
        records = await tail.read_to_end(timeout)
        return records if tail.exists else None
