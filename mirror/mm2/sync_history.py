"""Precise offset translation: the offset syncs a reader can trust, kept per partition besides Java's slots.

Java's `OffsetSyncStore` keeps 64 exponentially spaced syncs and translates with the "+1" rule, so a group
far behind the newest sync may re-read almost its whole distance to the nearest kept one. `SyncHistory`
keeps, per source partition, *points*: syncs in upstream order, each with whether the *link* from the
point before it can be trusted. A trusted link is interpolated (`downstream = P.d + (g - P.u)`, clamped to
the next point), so a group anywhere inside a trusted run translates exactly; elsewhere it falls back to the
+1 rule on the nearest sync at or below the group (ours or Java's, whichever is newer). The reasoning, the
bounds and what makes a link trusted are in docs/mm2-compat.md §5.1; in short, a link is trusted when both
syncs carry the same writer id (`WRITER_HEADER`: one session of one precise `OffsetSyncWriter`) and no
break marker repeats the later one, nothing is missing between them in the offset-syncs topic (`gap`), both
offsets increase, and a later sync of that writer confirmed the link (the link into the newest sync is not
trusted yet: a marker may follow it).

Memory per partition: at most `MAX_POINTS_PER_PARTITION` points, plus the two points around each pinned
group offset (`pin`), plus Java's 64 slots. A copy without gaps needs three points whatever its length:
points on the line of a trusted run are merged.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mirror.mm2.offset_translation import OffsetSyncStore
from mirror.mm2.records import OffsetSync
from mirror.types import TP

__all__ = ["MAX_POINTS_PER_PARTITION", "WRITER_HEADER", "SyncHistory", "Translation"]

MAX_POINTS_PER_PARTITION: Final = 256
WRITER_HEADER: Final = "mirror.offset-sync.writer"
"""The record header naming the writer session of a precise offset sync (random bytes per session); Java
MM2 ignores headers of offset syncs. Syncs of different writers (or of none) never make a trusted link."""


@dataclass(frozen=True, slots=True)
class Translation:
    """A translated offset and the most records a consumer resuming there may read twice.

    ``method``: "sync" (the group sits on a sync), "line" (interpolated on a trusted link), "+1" (Java's
    rule on the nearest sync below), "java" (the same on a sync only Java's slots still hold).
    """

    offset: int
    reread_bound: int
    method: str


class _Points:
    """The points of one partition: parallel lists, upstream offsets strictly increasing."""

    __slots__ = ("down", "epoch", "last", "linked", "up", "writer")

    def __init__(self) -> None:
        self.up: list[int] = []
        self.down: list[int] = []
        self.linked: list[bool] = []  # linked[i]: the link from point i - 1 to point i is trusted
        self.last: tuple[int, int] | None = None  # the last raw sync read
        self.epoch = 0  # the store's gap count when `last` was read
        self.writer: bytes | None = None  # the id of the writer of `last` (None: it has none)

    def clear(self) -> None:
        self.up.clear()
        self.down.clear()
        self.linked.clear()
        self.last = None

    def trusted(self, index: int) -> bool:
        """The link into point `index` is trusted, and final: a later sync confirmed it was no new start."""
        return 0 < index < len(self.up) - 1 and self.linked[index]

    def add(self, up: int, down: int, epoch: int, writer: bytes | None = None) -> None:
        last = self.last
        same_writer = writer is not None and writer == self.writer
        self.writer = writer
        if last is not None and not same_writer:
            # Another writer: a new session, a zombie still copying, an older mirror or Java MM2 (no id).
            # Neither the link into its sync nor the one into the other writer's newest is trusted (no
            # later sync of that writer confirmed it: one may be lost).
            self.linked[-1] = False
        elif last is not None and (up, down) == last:  # a break marker: the link into it is not trusted
            self.linked[-1] = False
            return
        if last is not None and up < last[0]:
            # An upstream rewind (a copy restarted from older progress): the points below it still say
            # where those records' first copies are; the ones at or above it are superseded by the new
            # copy. (Java's store starts over; it still answers below, through `SyncHistory.translate`.)
            self._cut(up)
            last = None
        self.last = (up, down)
        if last is None:
            self.up.append(up)
            self.down.append(down)
            self.linked.append(False)
            self.epoch = epoch
            return
        if up == last[0]:  # the same record copied again elsewhere: keep the newest
            self.down[-1] = down
            self.linked[-1] = False
            self.epoch = epoch
            return
        trusted = same_writer and epoch == self.epoch and down > last[1]
        self.epoch = epoch
        # The point that was newest is final now (no marker followed it): if it continues a trusted run
        # whose previous point lies on the run's line, that previous point is not needed any more.
        n = len(self.up)
        if n >= 3 and self.linked[n - 1] and self.linked[n - 2] and self._on_line(n - 3, n - 2):
            del self.up[n - 2], self.down[n - 2], self.linked[n - 2]
        self.up.append(up)
        self.down.append(down)
        self.linked.append(trusted)

    def _cut(self, up: int) -> None:
        """Forget the points at or above `up`. A trusted one-to-one link crossing `up` (downstream and
        upstream distances equal) ends at the point of its line just below `up`: every offset up to
        there still translates exactly. Any other link crossing it is lost (a point on it would claim an
        exactness the link does not have)."""
        k = bisect_left(self.up, up)
        if k == len(self.up):
            self.linked[-1] = False  # it was the newest: nothing confirmed the link into it
            return
        end: tuple[int, int] | None = None
        if k > 0 and self.up[k - 1] < up - 1 and self.trusted(k) and self._on_line(k - 1, k):
            end = (up - 1, self.down[k - 1] + (up - 1 - self.up[k - 1]))
        del self.up[k:], self.down[k:], self.linked[k:]
        if end is not None:
            self.up.append(end[0])
            self.down.append(end[1])
            self.linked.append(True)

    def _on_line(self, a: int, b: int) -> bool:
        return self.down[b] - self.down[a] == self.up[b] - self.up[a]

    def evict(self, pins: Iterable[int], cap: int) -> None:
        """Above `cap`, drop the oldest points not around a pinned offset (down to 7/8 of the cap); the
        link over a dropped point is not trusted any more."""
        if len(self.up) <= cap:
            return
        keep = {len(self.up) - 1}
        for g in pins:
            i = bisect_right(self.up, g) - 1
            keep.update((i, i + 1))
        drop: set[int] = set()
        excess = len(self.up) - (cap - cap // 8)
        for i in range(len(self.up)):
            if len(drop) >= excess:
                break
            if i not in keep:
                drop.add(i)
        for i in sorted(drop, reverse=True):
            if i + 1 < len(self.up):
                self.linked[i + 1] = False
            del self.up[i], self.down[i], self.linked[i]
        if self.linked:
            self.linked[0] = False


class SyncHistory:
    """Java's `OffsetSyncStore` (``java``) plus the trusted points of every partition.

    Feed every record of the offset-syncs topic to `update` (and call `gap` where records are missing from
    it, e.g. compacted away); `mark_read_to_end` as for Java's store. `pin` the committed offsets of the
    known groups before syncs arrive, so the points around them are kept whatever the cap.
    """

    __slots__ = ("_epoch", "_partitions", "_pins", "java", "max_points")

    def __init__(
        self, initialization_must_read_to_end: bool = True, max_points: int = MAX_POINTS_PER_PARTITION
    ) -> None:
        self.java = OffsetSyncStore(initialization_must_read_to_end)
        self.max_points = max(max_points, 4)
        self._partitions: dict[TP, _Points] = {}
        self._pins: dict[TP, tuple[int, ...]] = {}
        self._epoch = 0

    @property
    def read_to_end(self) -> bool:
        return self.java.read_to_end

    def mark_read_to_end(self) -> None:
        self.java.mark_read_to_end()

    def gap(self) -> None:
        """Records of the offset-syncs topic are missing here: no link spanning this place is trusted."""
        self._epoch += 1

    def pin(self, tp: TP, offsets: Iterable[int]) -> None:
        """Keep the points around these upstream offsets of `tp` (the groups' committed offsets)."""
        pins = tuple(sorted(set(offsets)))
        if pins:
            self._pins[tp] = pins
        else:
            self._pins.pop(tp, None)

    def unpin_all(self) -> None:
        self._pins.clear()

    def update(self, sync: OffsetSync, writer: bytes | None = None) -> None:
        """Apply one sync read from the offset-syncs topic; `writer`: the id its record carries in the
        `WRITER_HEADER` header (None: none, e.g. Java MM2's)."""
        tp = sync.topic_partition
        points = self._partitions.get(tp)
        if points is None:
            points = self._partitions[tp] = _Points()
        java = self.java
        if not java.read_to_end and java.initialization_must_read_to_end:
            points.clear()  # Java keeps only the newest sync while loading without checkpoints; so do we
        java.update(sync)
        points.add(sync.upstream_offset, sync.downstream_offset, self._epoch, writer)
        points.evict(self._pins.get(tp, ()), self.max_points)

    def points(self, tp: TP) -> list[tuple[int, int, bool]]:
        """(upstream, downstream, link into it trusted) of every point of `tp`, oldest first."""
        p = self._partitions.get(tp)
        if p is None:
            return []
        return [(p.up[i], p.down[i], p.trusted(i)) for i in range(len(p.up))]

    def partitions(self) -> list[TP]:
        return list(self._partitions)

    def translate(self, tp: TP, upstream: int) -> Translation | None:
        """Where a group committed at `upstream` on source partition `tp` resumes downstream.

        None: nothing to answer (the initial read is not complete, no sync, or the offset is older than
        every sync kept: Java drops such a checkpoint too). Never past a record the group has not read.
        """
        if not self.java.read_to_end:
            return None
        p = self._partitions.get(tp)
        i = -1 if p is None else bisect_right(p.up, upstream) - 1
        if p is not None and i >= 0:
            up, down = p.up[i], p.down[i]
            if upstream == up:
                return Translation(down, 0, "sync")
            if p.trusted(i + 1):
                n_up, n_down = p.up[i + 1], p.down[i + 1]
                extra = max(0, (n_down - down) - (n_up - up))
                return Translation(min(down + upstream - up, n_down), min(upstream - up - 1, extra), "line")
        java = self.java.lookup(tp, upstream)
        nxt = self._next_above(tp, p, i, upstream)
        if (
            java is not None
            and java.upstream_offset <= upstream
            and (p is None or i < 0 or java.upstream_offset > p.up[i])
        ):
            return _plus_one(java.upstream_offset, java.downstream_offset, upstream, "java", nxt)
        if p is None or i < 0:
            return None
        return _plus_one(p.up[i], p.down[i], upstream, "+1", nxt)

    def _next_above(self, tp: TP, p: _Points | None, i: int, upstream: int) -> int | None:
        """The downstream offset of the nearest sync known above `upstream`: the copies of every record
        before `upstream` lie before it."""
        best: tuple[int, int] | None = None
        if p is not None and i + 1 < len(p.up):
            best = (p.up[i + 1], p.down[i + 1])
        for s in self.java.syncs(tp) or ():
            if s.upstream_offset > upstream and (best is None or s.upstream_offset < best[0]):
                best = (s.upstream_offset, s.downstream_offset)
        return None if best is None else best[1]

    def translate_back(self, tp: TP, downstream: int) -> Translation | None:
        """The reverse: a group at `downstream` on the copy of `tp` (it read the copy's records before it)
        resumes on the source one past the last record it read there, so it never skips a record it has
        not read, copied or not (a record refused by the target is read on the source). None: no sync
        at or below its last read position."""
        if not self.java.read_to_end:
            return None
        last_read = downstream - 1
        p = self._partitions.get(tp)
        i = -1
        if p is not None:
            i = len(p.down) - 1
            while i >= 0 and p.down[i] > last_read:
                i -= 1
        java = next((s for s in self.java.syncs(tp) or () if s.downstream_offset <= last_read), None)
        if p is not None and i >= 0:
            up, down = p.up[i], p.down[i]
            if last_read == down:
                return Translation(up + 1, 0, "sync")
            if p.trusted(i + 1) and p.down[i + 1] > last_read:
                n_up, n_down = p.up[i + 1], p.down[i + 1]
                extra = max(0, (n_down - down) - (n_up - up))
                back = max(up + 1, min(up + (downstream - down) - extra, n_up))
                return Translation(back, max(0, (downstream - down) - (back - up)), "line")
        if java is not None and (p is None or i < 0 or java.upstream_offset > p.up[i]):
            return _minus_one(java.upstream_offset, java.downstream_offset, downstream, "java")
        if p is None or i < 0:
            return None
        return _minus_one(p.up[i], p.down[i], downstream, "+1")


def _plus_one(
    sync_up: int, sync_down: int, upstream: int, method: str, next_down: int | None = None
) -> Translation:
    """Java's rule: on the sync when the group sits on it, else the record after the sync's. The group may
    read again the records between the sync and its offset: fewer than its upstream distance, and than
    the downstream distance to the next sync above it (`next_down`)."""
    if upstream == sync_up:
        return Translation(sync_down, 0, "sync" if method == "+1" else method)
    bound = upstream - sync_up - 1
    if next_down is not None and next_down > sync_down:
        bound = min(bound, next_down - sync_down - 1)
    return Translation(sync_down + 1, max(0, bound), method)


def _minus_one(sync_up: int, sync_down: int, downstream: int, method: str) -> Translation:
    """The +1 rule backwards, for a group whose last read record is at or after the sync's copy: the
    record after the sync's upstream; the records it read after the sync's copy may be read again."""
    if downstream == sync_down + 1:
        return Translation(sync_up + 1, 0, "sync" if method == "+1" else method)
    return Translation(sync_up + 1, max(0, downstream - sync_down - 1), method)
