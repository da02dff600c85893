"""`verify`: a flow's source topics against their remote topics, per partition, over the copied range.

The range of a source partition runs from its log start to its stored progress (the last source offset the
target acknowledged, `mirror.replication.progress`), so a verification can run while replication runs:
records copied past the stored progress are not compared, records not copied yet neither. Both sides are
read ``read_committed`` (aborted transactions never count; transaction markers take offsets but are no
records) and only digests are kept (`mirror.migration.digest`), streamed through a bounded comparison.

Where the sequence starts on the target: at the target's log start, or, when the offset syncs
(docs/mm2-compat.md §5) say exactly where the copy began, there. With ``sample`` only the last ``sample``
records of each partition are compared, from the newest offset sync before them (an exact anchor).
Compacted topics are compared by key (`KeyedComparison`): the clusters compact on their own schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol

import structlog

from mirror.config import ClusterSettings, ConfigError, FlowSettings, Settings
from mirror.errors import KafkaUnavailable, MirrorError
from mirror.jobs.checkpoint import SYNC_FALLBACK
from mirror.kafka import Admin, Reader, SourceRecord
from mirror.kafka.groups import read_partition
from mirror.migration.digest import (
    DEFAULT_WINDOW,
    Entry,
    KeyedComparison,
    Outcome,
    SequenceComparison,
    record_digest,
)
from mirror.mm2.filters import TopicFilter
from mirror.replication import malformed
from mirror.replication.progress import ProgressStore
from mirror.replication.topology import make_policy, offset_syncs_location
from mirror.types import TP

__all__ = [
    "PartitionCheck",
    "Progress",
    "VerifyReport",
    "digest_of",
    "reaching",
    "read_offset_syncs",
    "verify",
]

log = structlog.get_logger(__name__)

State = Literal["identical", "duplicated", "different", "not copied", "empty"]
"""``duplicated``: identical but for records copied twice (at-least-once re-copies after a crash), which
count as a difference unless allowed."""

_FETCH_MS: Final = 200
_STALL_SECONDS: Final = 60.0  # no record from a side that should have more: give up with an error
_SYNCS_TIMEOUT: Final = 30.0
# Partitions are read one after the other: a fetch waiting at the end of the previous one (the broker's
# default long poll is 500 ms) must not delay the next.
_READER: Final = {"fetch.max.wait.ms": "20"}


class Progress(Protocol):
    """Where a verification reports how far it is (the CLI's progress bar)."""

    def total(self, records: int) -> None: ...

    def advance(self, records: int) -> None: ...


class _NoProgress:
    def total(self, records: int) -> None:
        pass

    def advance(self, records: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class PartitionCheck:
    """One source partition and its copy: the range compared and what was found."""

    topic: str
    partition: int
    remote_topic: str
    state: State
    source_start: int  # first source offset of the range
    source_end: int  # the range ends before this offset (stored progress + 1)
    target_start: int | None  # first target offset read
    compacted: bool = False
    sampled: bool = False
    outcome: Outcome | None = None
    note: str = ""


@dataclass(slots=True)
class VerifyReport:
    flow: str
    checks: list[PartitionCheck] = field(default_factory=list)
    seconds: float = 0.0
    allow_duplicates: bool = False

    @property
    def failing(self) -> list[PartitionCheck]:
        """The partitions that differ (duplicates only when they are not allowed)."""
        bad = {"different"} if self.allow_duplicates else {"different", "duplicated"}
        return [c for c in self.checks if c.state in bad]

    @property
    def identical(self) -> bool:
        return not self.failing

    @property
    def records(self) -> int:
        """Source records compared."""
        return sum(c.outcome.source_records for c in self.checks if c.outcome is not None)


@contextlib.asynccontextmanager
async def reaching(alias: str, what: str) -> AsyncIterator[None]:
    """An unreachable cluster named in the error: ``cluster B: cannot read the stored progress: ...``."""
    try:
        yield
    except KafkaUnavailable as exc:
        raise KafkaUnavailable(f"cluster {alias}: cannot {what}: {exc}") from exc


def digest_of(record: SourceRecord) -> bytes:
    return record_digest(record.key, record.value, record.headers, record.timestamp)


async def read_offset_syncs(settings: Settings, flow: FlowSettings) -> dict[TP, list[tuple[int, int]]]:
    """Every offset sync of the flow still in its topic: (upstream, downstream) per source partition, in
    the order written. Empty when the topic does not exist."""
    alias, topic = offset_syncs_location(flow, make_policy(flow))
    async with asyncio.timeout(_SYNCS_TIMEOUT):
        records = await read_partition(
            settings.cluster(alias), topic, f"{flow.name}|verify|offset-syncs-consumer", _SYNCS_TIMEOUT
        )
    syncs: dict[TP, list[tuple[int, int]]] = defaultdict(list)
    readable = malformed.decoded(
        records or (), malformed.offset_sync, cluster=alias, topic=topic, fallback=SYNC_FALLBACK
    )
    for sync in readable:
        syncs[sync.topic_partition].append((sync.upstream_offset, sync.downstream_offset))
    return dict(syncs)


async def verify(
    settings: Settings,
    flow: FlowSettings,
    topics: Sequence[str] = (),
    *,
    sample: int | None = None,
    allow_duplicates: bool = False,
    window: int = DEFAULT_WINDOW,
    progress: Progress | None = None,
) -> VerifyReport:
    """Compare the flow's source topics (``topics``, or every topic of the flow's filter with stored
    progress) with their remote
    topics. Raises `ConfigError` for a topic the source does not have, `MirrorError` when a cluster
    cannot be read. With ``allow_duplicates`` a partition whose only differences are duplicates counts as
    the same (state ``duplicated``)."""
    started = time.monotonic()
    progress = progress or _NoProgress()
    source, target = settings.cluster(flow.source), settings.cluster(flow.target)
    policy = make_policy(flow)
    async with reaching(flow.target, "read the stored progress"):
        stored = await ProgressStore(flow, target).load()
    wanted, source_topics, target_topics, compacted = await _topics(flow, source, target, topics, stored)
    try:
        syncs = await read_offset_syncs(settings, flow)
    except (MirrorError, TimeoutError) as exc:
        log.warning("cannot read the offset syncs; comparing from the log starts", error=str(exc))
        syncs = {}
    partitions = [(t, p) for t in wanted for p in range(source_topics[t])]
    report = VerifyReport(flow.name, allow_duplicates=allow_duplicates)
    isolation = flow.consumer.get("isolation.level", "read_committed")
    source_reader = Reader(source, f"{flow.name}|verify|source-consumer", _READER, isolation)
    target_reader = Reader(target, f"{flow.name}|verify|target-consumer", _READER, "read_committed")
    try:
        async with reaching(flow.source, "read"):
            await source_reader.start()
        async with reaching(flow.target, "read"):
            await target_reader.start()
        begins = await source_reader.beginning_offsets(partitions)
        ends = await source_reader.end_offsets(partitions)
        ranges = [max(min(stored[tp] + 1, ends[tp]) - begins[tp], 0) for tp in partitions if tp in stored]
        progress.total(sum(min(n, sample) if sample else n for n in ranges))
        side = _Sides(source_reader, target_reader, window, progress)
        for tp in partitions:
            remote = (policy.format_remote_topic(flow.source, tp[0]), tp[1])
            check = await side.check(
                tp,
                remote,
                stored.get(tp),
                (begins[tp], ends[tp]),
                target_topics.get(remote[0], 0) > tp[1],
                tp[0] in compacted,
                syncs.get(tp, []),
                sample,
            )
            report.checks.append(check)
    finally:
        await asyncio.gather(source_reader.close(), target_reader.close())
    report.seconds = time.monotonic() - started
    log.info("verified", flow=flow.name, partitions=len(report.checks), records=report.records)
    return report


async def _topics(
    flow: FlowSettings,
    source: ClusterSettings,
    target: ClusterSettings,
    topics: Sequence[str],
    stored: Mapping[TP, int],
) -> tuple[list[str], dict[str, int], dict[str, int], set[str]]:
    """The topics to compare (``topics``, else those of the flow's filter with stored progress), the
    partition counts of the source's and the target's topics, and which wanted topics are compacted."""
    source_admin = Admin(source, f"{flow.name}|verify|source-admin")
    target_admin = Admin(target, f"{flow.name}|verify|target-admin")
    try:
        async with reaching(flow.source, "list topics"):
            await source_admin.start()
        async with reaching(flow.target, "list topics"):
            await target_admin.start()
        source_topics = await source_admin.list_topics()
        target_topics = await target_admin.list_topics()
        unknown = [t for t in topics if t not in source_topics]
        if unknown:
            raise ConfigError("--topic", unknown[0], f"a topic of cluster {flow.source}")
        chosen = TopicFilter(flow.topics, flow.topics_exclude)
        wanted = sorted(set(topics)) or sorted(
            {t for t, _ in stored if t in source_topics and chosen.matches(t)}
        )
        configs = await source_admin.describe_topic_configs(wanted)
    finally:
        await asyncio.gather(source_admin.close(), target_admin.close())
    compacted = set()
    for topic, entries in configs.items():
        if isinstance(entries, MirrorError):
            raise entries
        if any(e.name == "cleanup.policy" and "compact" in (e.value or "") for e in entries):
            compacted.add(topic)
    return wanted, source_topics, target_topics, compacted


class _Sides:
    """The two readers of a verification, checking one partition at a time."""

    def __init__(self, source: Reader, target: Reader, window: int, progress: Progress) -> None:
        self.source = source
        self.target = target
        self.window = window
        self.progress = progress

    async def check(  # noqa: PLR0917 (one partition's facts, gathered by the caller)
        self,
        tp: TP,
        remote: TP,
        last: int | None,
        offsets: tuple[int, int],
        remote_exists: bool,
        compacted: bool,
        syncs: Sequence[tuple[int, int]],
        sample: int | None,
    ) -> PartitionCheck:
        begin, end_now = offsets
        base = PartitionCheck(tp[0], tp[1], remote[0], "empty", begin, begin, None, compacted)
        if last is None:
            return replace(base, state="empty" if begin >= end_now else "not copied")
        end = min(last + 1, end_now)
        if not remote_exists:
            outcome = Outcome(source_records=max(end - begin, 0))
            outcome.counts["missing"] = outcome.source_records
            note = f"remote partition {remote[0]}-{remote[1]} does not exist"
            return replace(base, state="different", source_end=end, outcome=outcome, note=note)
        target_begin = (await self.target.beginning_offsets([remote]))[remote]
        target_end = (await self.target.end_offsets([remote]))[remote]
        if compacted:
            outcome = await self._keyed(tp, remote, begin, end, end_now, target_begin, target_end)
            return _checked(base, begin, end, target_begin, outcome, False, "")
        start, target_start, note = begin, target_begin, ""
        head_unmatched_ok = begin > 0  # the source deleted records whose copies the target may hold
        anchor = _anchor(syncs, begin, end - sample if sample else None, target_begin)
        if anchor is not None:
            start, target_start = anchor
            head_unmatched_ok = False
        elif sample:
            note = "no offset sync to anchor a sample: compared in full"
        outcome = await self._sequence(
            tp, remote, (start, end), (target_start, target_end), head_unmatched_ok
        )
        sampled = bool(sample) and anchor is not None and start > begin
        return _checked(base, start, end, target_start, outcome, sampled, note)

    async def _sequence(
        self, tp: TP, remote: TP, source_range: tuple[int, int], target_range: tuple[int, int], head_ok: bool
    ) -> Outcome:
        comparison = SequenceComparison(self.window, head_ok)
        start, end = source_range
        target_start, target_end = target_range
        await self.source.assign({tp: start})
        await self.target.assign({remote: target_start})
        if start >= end:
            comparison.end_source()
        if target_start >= target_end:
            comparison.end_target()
        stall = _Stall(tp, remote)
        while not comparison.done:
            if comparison.wants_source:
                entries = [
                    Entry(r.offset, digest_of(r))
                    for batch in await self.source.fetch(_FETCH_MS)
                    for r in batch.records
                    if r.offset < end
                ]
                comparison.add_source(entries)
                self.progress.advance(len(entries))
                stall.fed(entries)
                if await self.source.position(*tp) >= end:
                    comparison.end_source()
            if comparison.wants_target:
                targets = [
                    Entry(r.offset, digest_of(r))
                    for batch in await self.target.fetch(_FETCH_MS)
                    for r in batch.records
                ]
                comparison.add_target(targets)
                stall.fed(targets)
                if await self.target.position(*remote) >= target_end:
                    comparison.end_target()
            comparison.step()
            stall.check()
        return comparison.finish()

    async def _keyed(  # noqa: PLR0917
        self, tp: TP, remote: TP, begin: int, end: int, end_now: int, target_begin: int, target_end: int
    ) -> Outcome:
        """A compacted partition: the source to its current end, the target to its end, latest per key."""
        comparison = KeyedComparison(end)
        stall = _Stall(tp, remote)
        for reader, part, first, last in (
            (self.source, tp, begin, end_now),
            (self.target, remote, target_begin, target_end),
        ):
            add = comparison.add_source if reader is self.source else comparison.add_target
            await reader.assign({part: first})
            while first < last and await reader.position(*part) < last:
                records = [r for batch in await reader.fetch(_FETCH_MS) for r in batch.records]
                for r in records:
                    if r.offset < last:
                        add(r.key, r.offset, None if r.value is None else digest_of(r))
                if reader is self.source:
                    self.progress.advance(sum(r.offset < end for r in records))
                stall.fed(records)
                stall.check()
        return comparison.finish()


def _anchor(
    syncs: Sequence[tuple[int, int]], begin: int, sample_start: int | None, target_begin: int
) -> tuple[int, int] | None:
    """Where to start comparing, as (source offset, target offset), from the offset syncs; None: from the
    log starts.

    With a sample: the newest sync at or before the sample's first offset. Without: the first sync, when
    it is the copy's very beginning (its target offset is the target's log start) and the source has
    records before it that were never copied (``auto.offset.reset = latest``)."""
    usable = [(u, d) for u, d in syncs if u >= begin and d >= target_begin]
    if sample_start is not None:
        before = [s for s in usable if s[0] <= sample_start]
        return max(before) if before else None
    if usable:
        first = min(usable)
        if first[1] == target_begin and first[0] > begin:
            return first
    return None


def _checked(  # noqa: PLR0917
    base: PartitionCheck,
    start: int,
    end: int,
    target_start: int,
    outcome: Outcome,
    sampled: bool,
    note: str,
) -> PartitionCheck:
    return replace(
        base,
        state=_state(outcome),
        source_start=start,
        source_end=end,
        target_start=target_start,
        sampled=sampled,
        outcome=outcome,
        note=note,
    )


class _Stall:
    """Fails a read that gets no records for `_STALL_SECONDS` while a side should have more."""

    def __init__(self, tp: TP, remote: TP) -> None:
        self._what = f"{tp[0]}-{tp[1]} / {remote[0]}-{remote[1]}"
        self._last = time.monotonic()

    def fed(self, records: Sequence[object]) -> None:
        if records:
            self._last = time.monotonic()

    def check(self) -> None:
        if time.monotonic() - self._last > _STALL_SECONDS:
            raise KafkaUnavailable(f"no records read for {_STALL_SECONDS:.0f} s while verifying {self._what}")


def _state(outcome: Outcome) -> State:
    if outcome.identical:
        return "identical"
    return "duplicated" if set(outcome.counts) == {"duplicate"} else "different"
