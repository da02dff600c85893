"""Unreadable records of the internal topics mirror reads: each reported once, counted, passed over.

Progress (``mm2-offsets.*``), offset syncs, checkpoints and heartbeats may hold a record `mirror` cannot
decode — written by a buggy tool, an older version or by mistake. Such a record never stops a flow and
never makes a loop crash and restart: its reader makes it a `MalformedRecord` (topic, partition, offset,
what is wrong) and hands it to `report`, which logs it once per process however often the topic is read
again, counts it in ``mirror_internal_records_malformed_total{cluster, topic}``, and the reader goes on
with the safest fallback for its kind (docs/guarantees.md, "Unreadable records in internal topics").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

import structlog

from mirror import metrics
from mirror.errors import MalformedRecord
from mirror.mm2.records import Checkpoint, OffsetSync, RecordFormatError

__all__ = ["MalformedRecord", "checkpoint", "decoded", "offset_sync", "report"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

#: How many reported records are remembered (so a re-read reports nothing twice); older ones may be
#: reported again after that many others.
_REMEMBERED = 10_000
_reported: OrderedDict[tuple[str, str, int, int], None] = OrderedDict()


def report(cluster: str, error: MalformedRecord, fallback: str) -> bool:
    """Report an unreadable record of ``cluster`` once (log, metric); ``fallback`` says what is done
    instead. Returns whether it was reported now (False: reported before)."""
    key = (cluster, error.topic, error.partition, error.offset)
    if key in _reported:
        return False
    _reported[key] = None
    if len(_reported) > _REMEMBERED:
        _reported.popitem(last=False)
    metrics.internal_records_malformed_total.labels(cluster, error.topic).inc()
    log.error(
        "unreadable record in an internal topic; passed over",
        cluster=cluster,
        topic=error.topic,
        partition=error.partition,
        offset=error.offset,
        reason=error.reason,
        fallback=fallback,
    )
    return True


class KeyedRecord(Protocol):
    """A record of an internal topic as its reader has it."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def offset(self) -> int: ...


def decoded(
    records: Iterable[KeyedRecord],
    decode: Callable[[bytes, bytes], T],
    *,
    cluster: str,
    topic: str,
    fallback: str,
    partition: int = 0,
    errors: list[MalformedRecord] | None = None,
) -> Iterator[T]:
    """The records of ``topic``-``partition`` that ``decode`` reads, in order; each one it cannot read
    (`RecordFormatError`) is reported (`report`), added to ``errors`` and passed over. Tombstones (no key
    or no value) are not records to read: skipped silently."""
    for record in records:
        if record.key is None or record.value is None:
            continue
        try:
            value = decode(record.key, record.value)
        except RecordFormatError as exc:
            error = MalformedRecord(topic, partition, record.offset, str(exc))
            report(cluster, error, fallback)
            if errors is not None:
                errors.append(error)
            continue
        yield value


def offset_sync(key: bytes, value: bytes) -> OffsetSync:
    """`OffsetSync.decode`, refusing negative offsets too (they would poison translation)."""
    sync = OffsetSync.decode(key, value)
    _no_negative_offset(f"offset sync of {sync.topic}-{sync.partition}", sync)
    return sync


def checkpoint(key: bytes, value: bytes) -> Checkpoint:
    """`Checkpoint.decode`, refusing negative offsets too (a consumer would be sent before the log)."""
    found = Checkpoint.decode(key, value)
    _no_negative_offset(f"checkpoint of group {found.group} for {found.topic}-{found.partition}", found)
    return found


def _no_negative_offset(what: str, record: OffsetSync | Checkpoint) -> None:
    if record.upstream_offset < 0 or record.downstream_offset < 0:
        raise RecordFormatError(
            f"{what} has a negative offset ({record.upstream_offset} -> {record.downstream_offset})"
        )
