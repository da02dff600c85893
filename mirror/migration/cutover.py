"""`cutover`: move consumer groups of a flow's topics from the source to the target, or refuse with a reason.

The records are copied by the running ``mirror run`` workers; a cutover observes and waits, then does the
group part itself. Its steps, each an observation or idempotent, so a cutover interrupted anywhere can
run again:

1. the groups have no active members on either cluster (else: refused, "active group");
2. the lag (source end offset minus stored progress) falls to ``max_lag`` or below (else: refused);
3. the source stops growing: its end offsets stay the same, with no transaction open, for
   ``quiet_seconds`` (producers moved);
4. the tail is copied: no committed source record after the stored progress (else: refused);
5. `verify` finds the copy identical (else: refused; nothing was written yet);
6. the groups' committed source offsets are translated through the offset syncs (Java's translation,
   docs/mm2-compat.md §5: never past a record not consumed, so nothing is skipped, but from the nearest of
   all syncs in the topic), written as final
   checkpoints and committed to the groups on the target (`mirror.jobs.group_sync.plan_group_sync`); a
   group already past the translated offset on the target is refused (its consumers would skip records),
   and the broker refuses the commit for a group that became active meanwhile.

A dry run observes once (no waiting: it says what a cutover would wait for), verifies what is copied so
far, and shows the offsets it would commit, writing nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, TypeVar

import structlog

from mirror.config import FlowSettings, Settings
from mirror.errors import MirrorError
from mirror.jobs.checkpoint import CheckpointStore, Translated, translate_group
from mirror.jobs.checkpoint_records import CheckpointRecords
from mirror.jobs.group_sync import plan_group_sync
from mirror.kafka import Admin, Reader, Writer
from mirror.kafka.groups import CommittedOffset, Groups
from mirror.migration.verify import VerifyReport, reaching, read_offset_syncs, verify
from mirror.mm2.filters import TopicFilter
from mirror.mm2.offset_translation import OffsetSyncStore, checkpoint_is_more_recent
from mirror.mm2.policy import checkpoint_topic_name
from mirror.mm2.records import OffsetSync
from mirror.replication.progress import ProgressStore
from mirror.replication.topology import checkpoints_topic, make_policy
from mirror.retry import Backoff, retrying
from mirror.types import TP

__all__ = [
    "CutoverOptions",
    "CutoverReport",
    "GroupChange",
    "Refused",
    "Step",
    "cutover",
    "lag_by_partition",
    "nearest_sync_store",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_FETCH_MS: Final = 200
_READER: Final = {"fetch.max.wait.ms": "20"}


class Refused(MirrorError):
    """The cutover stopped before changing anything it should not: the message says why."""

    kind = "refused"


@dataclass(frozen=True, slots=True)
class CutoverOptions:
    topics: Sequence[str]
    groups: Sequence[str]
    max_lag: int = 1000
    quiet_seconds: float = 10.0
    timeout: float = 300.0  # per waiting step
    dry_run: bool = False
    sample: int | None = None
    poll_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One partition of a group on the target: where it is, where the translation puts it, what was done."""

    group: str
    topic: str  # on the target
    partition: int
    upstream_offset: int
    downstream_offset: int
    current: int | None
    action: str  # "set", "keep (already there)", "keep (ahead)", "would set", or an error


@dataclass(slots=True)
class CutoverReport:
    flow: str
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    changes: list[GroupChange] = field(default_factory=list)
    verify: VerifyReport | None = None
    refused: str | None = None

    @property
    def completed(self) -> bool:
        return self.refused is None


@dataclass(frozen=True, slots=True)
class _Ends:
    """The source's high watermarks and (as the flow reads it) last stable offsets."""

    high: dict[TP, int]
    stable: dict[TP, int]

    @property
    def quiet(self) -> bool:
        """No transaction open (read_uncommitted flows: the two are the same)."""
        return self.high == self.stable


def lag_by_partition(
    stored: Mapping[TP, int], begins: Mapping[TP, int], ends: Mapping[TP, int]
) -> dict[TP, int]:
    """Offsets between the stored progress (the next offset to copy) and the source's end, per partition.
    An upper bound on the records to copy: transaction markers and compacted gaps take offsets too."""
    return {tp: max(end - max(stored.get(tp, -1) + 1, begins.get(tp, 0)), 0) for tp, end in ends.items()}


async def cutover(
    settings: Settings, flow: FlowSettings, options: CutoverOptions, say: Callable[[str], None]
) -> CutoverReport:
    """Run the steps; a refusal is in `CutoverReport.refused` (and the steps up to it), never half done."""
    report = CutoverReport(flow.name, options.dry_run)
    run = _Cutover(settings, flow, options, report, say)
    try:
        await run.start()
        await run.steps()
    except Refused as exc:
        report.refused = str(exc)
        say(f"refused: {exc}")
    finally:
        await run.close()
    return report


class _Cutover:
    def __init__(
        self,
        settings: Settings,
        flow: FlowSettings,
        options: CutoverOptions,
        report: CutoverReport,
        say: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.flow = flow
        self.options = options
        self.report = report
        self.say = say
        self.source = settings.cluster(flow.source)
        self.target = settings.cluster(flow.target)
        self.policy = make_policy(flow)
        self.progress = ProgressStore(flow, self.target)
        name = f"{flow.name}|cutover"
        self.source_admin = Admin(self.source, f"{name}|source-admin")
        self.target_admin = Admin(self.target, f"{name}|target-admin")
        isolation = flow.consumer.get("isolation.level", "read_committed")
        self.reader = Reader(self.source, f"{name}|source-consumer", _READER, isolation)
        # high watermarks: a transaction still open holds the last stable offset back, not these
        self.watermarks = Reader(self.source, f"{name}|source-watermarks", _READER, "read_uncommitted")
        self.partitions: list[TP] = []

    async def start(self) -> None:
        async with reaching(self.flow.source, "connect"):
            await self.source_admin.start()
            await self.reader.start()
            await self.watermarks.start()
        async with reaching(self.flow.target, "connect"):
            await self.target_admin.start()
        topics = await self.source_admin.list_topics()
        missing = [t for t in self.options.topics if t not in topics]
        if missing:
            raise Refused(f"topic {missing[0]!r} does not exist on {self.flow.source}")
        self.partitions = [(t, p) for t in self.options.topics for p in range(topics[t])]

    async def close(self) -> None:
        await asyncio.gather(
            self.source_admin.close(), self.target_admin.close(), self.reader.close(), self.watermarks.close()
        )

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until it answers: a retriable error (a cluster briefly unreachable, a group
        coordinator still loading) is logged and retried with backoff, for at most the step timeout."""
        results: list[T] = []
        errors: list[MirrorError] = []
        stopping = asyncio.Event()
        timer = asyncio.get_running_loop().call_later(self.options.timeout, stopping.set)

        async def attempt() -> None:
            results.append(await call())

        def on_error(exc: Exception) -> MirrorError:
            if not isinstance(exc, MirrorError) or not exc.retriable:
                raise exc
            errors.append(exc)
            return exc

        try:
            await retrying(
                what, attempt, stopping=stopping, backoff=Backoff(0.5, 5.0), log=log, on_error=on_error
            )
        finally:
            timer.cancel()
        if not results:
            raise errors[-1] if errors else Refused(f"{what}: no answer within {self.options.timeout:g} s")
        return results[0]

    def _step(self, name: str, ok: bool, detail: str) -> None:
        self.report.steps.append(Step(name, ok, detail))
        self.say(f"{name}: {detail}")
        if not ok:
            raise Refused(f"{name}: {detail}")

    async def steps(self) -> None:
        await self._groups_idle()
        await self._lag()
        await self._quiet()
        await self._tail()
        await self._verify()
        await self._offsets()

    # --- 1. groups idle ----------------------------------------------------------------------------

    async def _groups_idle(self, name: str = "groups idle") -> None:
        for alias, admin in ((self.flow.source, self.source_admin), (self.flow.target, self.target_admin)):
            groups = Groups(admin)
            for group in self.options.groups:
                description = await self._patiently(
                    f"describe group {group} on {alias}", partial(groups.describe, group)
                )
                if description.is_active:
                    self._step(
                        "active group",
                        False,
                        f"group {group!r} has {len(description.members)} active member(s) on {alias} "
                        f"(state {description.state}): stop its consumers there first",
                    )
        self._step(name, True, f"{len(self.options.groups)} group(s) without active members")

    # --- 2. lag ------------------------------------------------------------------------------------

    async def _observe_lag(self) -> tuple[dict[TP, int], dict[TP, int], dict[TP, int]]:
        """(stored progress, end offsets, lag) of the partitions."""
        return await self._patiently("read the progress and the source's offsets", self._lag_once)

    async def _lag_once(self) -> tuple[dict[TP, int], dict[TP, int], dict[TP, int]]:
        stored = await self.progress.load()
        begins = await self.reader.beginning_offsets(self.partitions)
        ends = await self.reader.end_offsets(self.partitions)
        return stored, ends, lag_by_partition(stored, begins, ends)

    async def _lag(self) -> None:
        async def check() -> tuple[bool, str]:
            _stored, _ends, lag = await self._observe_lag()
            total = sum(lag.values())
            if total <= self.options.max_lag:
                return True, f"{total} offset(s) behind (threshold {self.options.max_lag})"
            (topic, partition), most = max(lag.items(), key=lambda item: item[1])
            return (
                False,
                f"{total} offset(s) behind, above {self.options.max_lag} (most: {topic}-{partition}, {most})",
            )

        await self._until(check, "lag", "lag not reached")

    async def _until(self, check: Callable[[], Awaitable[tuple[bool, str]]], done: str, refused: str) -> None:
        """Run ``check`` every poll until it says done (step ``done``); refuse (step ``refused``) when the
        step timeout passes first. A dry run checks once and goes on."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            ok, detail = await check()
            if ok:
                self._step(done, True, detail)
                return
            if self.options.dry_run:
                self._step(done, True, f"not yet: {detail} (a cutover waits here)")
                return
            if time.monotonic() > deadline:
                self._step(refused, False, f"{detail}; is `mirror run` running for {self.flow.name}?")
            await asyncio.sleep(self.options.poll_seconds)

    # --- 3. the source stops growing ---------------------------------------------------------------

    async def _quiet(self) -> None:
        if self.options.dry_run:
            self.report.steps.append(Step("source quiet", True, "not waited for in a dry run"))
            return
        self.say(f"waiting for {self.flow.source} to stop growing (producers moved to {self.flow.target})")
        deadline = time.monotonic() + self.options.timeout
        ends = await self._source_ends()
        since = time.monotonic()
        while time.monotonic() - since < self.options.quiet_seconds:
            if time.monotonic() > deadline:
                self._step(
                    "source still growing",
                    False,
                    f"{self.flow.source} took records (or kept a transaction open) within every "
                    f"{self.options.quiet_seconds:g} s for {self.options.timeout:g} s: stop its producers "
                    "first",
                )
            await asyncio.sleep(self.options.poll_seconds)
            now = await self._source_ends()
            if now != ends or not now.quiet:
                ends, since = now, time.monotonic()
        self._step("source quiet", True, f"no new record for {self.options.quiet_seconds:g} s")

    async def _source_ends(self) -> _Ends:
        async def read() -> _Ends:
            return _Ends(
                await self.watermarks.end_offsets(self.partitions),
                await self.reader.end_offsets(self.partitions),
            )

        return await self._patiently(f"read the end offsets of {self.flow.source}", read)

    # --- 4. the tail is copied ---------------------------------------------------------------------

    async def _records_left(self, stored: Mapping[TP, int], ends: Mapping[TP, int]) -> dict[TP, int]:
        """Committed source records after the stored progress, per partition that has any."""
        left = {
            tp: max(stored.get(tp, -1) + 1, 0) for tp in self.partitions if ends[tp] > stored.get(tp, -1) + 1
        }
        if not left:
            return {}
        counts = dict.fromkeys(left, 0)
        await self.reader.assign(left)
        open_ = set(left)
        while open_:
            for batch in await self.reader.fetch(_FETCH_MS):
                tp = (batch.topic, batch.partition)
                counts[tp] += sum(1 for r in batch.records if r.offset < ends[tp])
            for tp in list(open_):
                if await self.reader.position(*tp) >= ends[tp]:
                    open_.discard(tp)
        return {tp: n for tp, n in counts.items() if n}

    async def _tail(self) -> None:
        async def check() -> tuple[bool, str]:
            stored, ends, _lag = await self._observe_lag()
            left = await self._records_left(stored, ends)
            if not left:
                return True, "every committed source record is copied (stored progress)"
            (topic, partition), most = max(left.items(), key=lambda item: item[1])
            return False, f"{sum(left.values())} record(s) not copied yet (most: {topic}-{partition}, {most})"

        await self._until(check, "tail copied", "lag not reached")

    # --- 5. verify ---------------------------------------------------------------------------------

    async def _verify(self) -> None:
        self.say("verifying")
        # at-least-once flows may copy records twice after a crash (README, "Guarantees"): consumers read
        # them twice, which a cutover accepts; exactly-once targets, read read_committed, never hold any
        at_least_once = self.flow.exactly_once_support == "disabled"
        report = await verify(
            self.settings,
            self.flow,
            self.options.topics,
            sample=self.options.sample,
            allow_duplicates=at_least_once,
        )
        self.report.verify = report
        different = report.failing
        if different:
            first = different[0]
            found = first.note or ", ".join(
                f"{n} {kind}" for kind, n in sorted(first.outcome.counts.items() if first.outcome else [])
            )
            self._step(
                "verification failed",
                False,
                f"{len(different)} partition(s) differ (first: {first.topic}-{first.partition}, {found}); "
                "`mirror verify` lists the differences",
            )
        self._step("verified", True, f"{report.records} record(s) identical")

    # --- 6. checkpoints and group offsets ------------------------------------------------------------

    async def _translate(self) -> dict[str, list[Translated]]:
        """Each group's committed offsets on the migrated topics, translated as Java translates them
        (`translate_group`), but from the newest of *all* offset syncs still in their topic at or before
        the group's offset, not only from the 64 a running checkpoint job keeps (spaced exponentially into
        the past): the group re-reads at most the records since that sync (about ``offset.lag.max``)."""
        syncs = await self._patiently(
            "read the offset syncs", partial(read_offset_syncs, self.settings, self.flow)
        )
        topic_filter = TopicFilter([re.escape(t) for t in self.options.topics], [])
        source_groups = Groups(self.source_admin)
        translated: dict[str, list[Translated]] = {}
        for group in self.options.groups:
            fetched = await self._patiently(
                f"read the offsets of group {group} on {self.flow.source}",
                partial(source_groups.fetch_offsets, group),
            )
            offsets = fetched.offsets
            wanted = {tp: c for tp, c in offsets.items() if topic_filter.matches(tp[0])}
            items = translate_group(
                nearest_sync_store(syncs, wanted),
                group,
                wanted,
                policy=self.policy,
                source_alias=self.flow.source,
                target_alias=self.flow.target,
                topic_filter=topic_filter,
            )
            upstream = {
                checkpoint_topic_name(self.policy, self.flow.source, self.flow.target, t): t
                for t in self.options.topics
            }
            done = {(upstream[i.checkpoint.topic], i.checkpoint.partition) for i in items}
            untranslated = sorted(set(wanted) - done)
            if untranslated:
                topic, partition = untranslated[0]
                self._step(
                    "offsets not translatable",
                    False,
                    f"group {group!r} at {topic}-{partition} offset {wanted[(topic, partition)].offset}: "
                    "no offset sync at or before it",
                )
            translated[group] = items
        return translated

    async def _offsets(self) -> None:
        translated = await self._translate()
        target_groups = Groups(self.target_admin)
        plans: dict[str, dict[TP, tuple[int, str]]] = {}
        for group, items in translated.items():
            checkpoints = {i.checkpoint.topic_partition: i.checkpoint for i in items}
            current = await self._patiently(
                f"read the offsets of group {group} on {self.flow.target}",
                partial(target_groups.fetch_offsets, group),
            )
            plan = plan_group_sync(checkpoints, current.offsets, current.errors)
            plans[group] = plan
            for tp, cp in sorted(checkpoints.items()):
                now = current.offsets.get(tp)
                error = current.errors.get(tp)
                if error is not None:
                    action = f"skip ({error})"
                elif tp in plan:
                    action = "would set" if self.options.dry_run else "set"
                else:
                    assert now is not None
                    action = "keep (already there)" if now.offset == cp.downstream_offset else "keep (ahead)"
                self.report.changes.append(
                    GroupChange(
                        group,
                        tp[0],
                        tp[1],
                        cp.upstream_offset,
                        cp.downstream_offset,
                        None if now is None else now.offset,
                        action,
                    )
                )
        ahead = [c for c in self.report.changes if c.action == "keep (ahead)"]
        if ahead:
            c = ahead[0]
            self._step(
                "group ahead on the target",
                False,
                f"group {c.group!r} is at offset {c.current} of {c.topic}-{c.partition} on "
                f"{self.flow.target}, past the translated {c.downstream_offset}: its consumers would skip "
                "records there (someone consumed or committed on the target already); reset the group there "
                "or move it by hand",
            )
        if self.options.dry_run:
            self._step("dry run", True, "nothing was written")
            return
        await self._groups_idle("groups still idle")  # consumers may have started during the waits
        await self._write_checkpoints([i for items in translated.values() for i in items])
        for group, plan in plans.items():
            outcome = await target_groups.alter_offsets(group, plan)
            if outcome.group_active:
                self._step("active group", False, f"group {group!r} became active on {self.flow.target}")
            if outcome.errors:
                (topic, partition), error = next(iter(outcome.errors.items()))
                self._step("offsets not committed", False, f"group {group!r} at {topic}-{partition}: {error}")
        written = sum(len(p) for p in plans.values())
        self._step(
            "offsets committed", True, f"{written} partition offset(s) committed on {self.flow.target}"
        )

    async def _write_checkpoints(self, items: Sequence[Translated]) -> None:
        """The final checkpoints, so `mirror offsets` and Java's RemoteClusterUtils agree with the commit;
        only those newer than the stored ones (a cutover run again writes none)."""
        topic = checkpoints_topic(self.flow, self.policy)
        await self.target_admin.ensure_topic(
            topic, 1, self.flow.checkpoints_topic_replication_factor, {"cleanup.policy": "compact"}
        )
        store = CheckpointStore()
        client = f"{self.flow.name}|cutover|checkpoints"
        await store.start(self.target, topic, f"{client}-consumer", log)
        new = [
            i
            for i in items
            if checkpoint_is_more_recent(
                store.get(i.checkpoint.group, i.checkpoint.topic_partition), i.checkpoint
            )
        ]
        writer = Writer(self.target, f"{client}-producer", {})
        try:
            await writer.start()
            records = CheckpointRecords(topic, (self.flow.source, self.flow.target), log)
            written = await records.write(writer, new, store)
        finally:
            await writer.close()
        self.say(f"checkpoints: {written} written to {topic}")


def nearest_sync_store(
    syncs: Mapping[TP, Sequence[tuple[int, int]]], offsets: Mapping[TP, CommittedOffset]
) -> OffsetSyncStore:
    """A translation store holding, per partition, only the newest sync at or before the group's offset
    (or the oldest sync, when every one is after it: then the offset is not translated)."""
    store = OffsetSyncStore(initialization_must_read_to_end=False)
    for tp, committed in offsets.items():
        candidates = syncs.get(tp, ())
        before = [s for s in candidates if s[0] <= committed.offset]
        chosen = max(before) if before else min(candidates, default=None)
        if chosen is not None:
            store.update(OffsetSync(tp[0], tp[1], chosen[0], chosen[1]))
    store.mark_read_to_end()
    return store
