"""Record digests, and the comparison of a source partition with its copy: missing, extra, reordered, changed.

Pure logic, no I/O (`mirror.migration.verify` feeds it from Kafka). A record's digest covers what
replication must keep (docs/guarantees.md): key, value (null and empty differ), headers (order and
duplicates kept) and timestamp; not its offset, which differs between the clusters.

`SequenceComparison` walks the source records of a partition (in offset order) beside the records of its
remote partition, fed incrementally so memory stays bounded: equal heads match; on a mismatch it looks
ahead (at most `window` records on each side) for the nearest point where both sides agree again, and
classifies the records skipped on the way:

- ``missing``: a source record with no copy at its place (source offset);
- ``extra``: a target record with no source record at its place (target offset);
- ``differing``: as many source as target records skipped at the same place: changed in transit
  (both offsets);
- ``reordered``: a missing and an extra record with the same digest: copied, but elsewhere (both offsets);
- ``duplicate``: an extra target record equal to one matched shortly before (an at-least-once re-copy
  after a crash; README, "Guarantees").

Compacted topics are compacted on each cluster on its own schedule, so their record sequences may
differ legitimately; `KeyedComparison` compares them by key instead: the latest record of each key in the
copied range against the latest copy on the target (a tombstone and no record are the same: absent).

Target records before the first match can be declared outside the compared range (`head_unmatched_ok`:
the source deleted them) and target records after the last source record of the range are never
compared (the target may run ahead of the stored progress).
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import islice
from typing import Final, Literal, NamedTuple

__all__ = [
    "DEFAULT_WINDOW",
    "Difference",
    "Entry",
    "KeyedComparison",
    "Kind",
    "Outcome",
    "SequenceComparison",
    "compare",
    "record_digest",
]

Kind = Literal["missing", "extra", "differing", "reordered", "duplicate"]

DEFAULT_WINDOW: Final = 10_000
"""How far (records, per side) a mismatch looks ahead for the point where both sides agree again."""
_WINDOWS: Final = (64, 1024)  # tried first: most defects are small and close
_RECENT: Final = 100_000  # matched digests remembered to recognise duplicates
_PENDING: Final = 100_000  # unmatched records kept per partition to pair reorders
_DIGEST_SIZE: Final = 16
_HEAD = struct.Struct(">qiii")  # timestamp, key length, value length, header count
_HEADER = struct.Struct(">ii")  # name length, value length


def record_digest(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]], timestamp: int
) -> bytes:
    """A 16-byte BLAKE2b digest of (key, value, headers, timestamp). Every length (-1 for null) comes
    before the bytes, so no two different records share their input (a null differs from an empty value,
    bytes cannot move between fields). One hash call per record: it runs for every record of both sides."""
    parts = [
        _HEAD.pack(
            timestamp, -1 if key is None else len(key), -1 if value is None else len(value), len(headers)
        ),
        key or b"",
        value or b"",
    ]
    for name, data in headers:
        encoded = name.encode()
        parts += (_HEADER.pack(len(encoded), -1 if data is None else len(data)), encoded, data or b"")
    return blake2b(b"".join(parts), digest_size=_DIGEST_SIZE).digest()


class Entry(NamedTuple):
    """One record of a side: its offset there and its digest."""

    offset: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Difference:
    kind: Kind
    source_offset: int | None
    target_offset: int | None


@dataclass(slots=True)
class Outcome:
    """What a comparison found; `differences` holds at most `limit` of them, the counts are exact."""

    matched: int = 0
    source_records: int = 0  # source records compared
    target_records: int = 0  # target records compared (outside the range not counted)
    before_range: int = 0  # target records before the first match, accepted as outside the range
    counts: Counter[str] = field(default_factory=Counter)
    differences: list[Difference] = field(default_factory=list)
    first: tuple[int, int] | None = None  # (source offset, target offset) of the first matched record
    last: tuple[int, int] | None = None  # ... and of the last

    @property
    def identical(self) -> bool:
        return not self.counts


class SequenceComparison:
    """Compares a source partition's records with its copy, fed in order, in bounded memory.

    Feed with `add_source`/`add_target`, say `end_source`/`end_target` when a side has no more, call
    `step` after feeding (it consumes what it can decide), and `finish` once `done`. `wants_source` and
    `wants_target` say which side to read next.
    """

    def __init__(
        self, window: int = DEFAULT_WINDOW, head_unmatched_ok: bool = False, limit: int = 1000
    ) -> None:
        self.window = max(window, 1)
        self.head_unmatched_ok = head_unmatched_ok
        self.limit = limit
        self.outcome = Outcome()
        self._src: deque[Entry] = deque()
        self._tgt: deque[Entry] = deque()
        self._src_ended = False
        self._tgt_ended = False
        self._recent: deque[bytes] = deque()
        self._recent_count: Counter[bytes] = Counter()
        self._missing: dict[bytes, deque[int]] = {}
        self._extra: dict[bytes, deque[int]] = {}
        self._pending = 0

    # --- feeding -----------------------------------------------------------------------------------

    def add_source(self, entries: Iterable[Entry]) -> None:
        self._src.extend(entries)

    def add_target(self, entries: Iterable[Entry]) -> None:
        self._tgt.extend(entries)

    def end_source(self) -> None:
        self._src_ended = True

    def end_target(self) -> None:
        self._tgt_ended = True

    @property
    def wants_source(self) -> bool:
        return not self._src_ended and len(self._src) < 2 * self.window

    @property
    def wants_target(self) -> bool:
        return not self._tgt_ended and len(self._tgt) < 2 * self.window and not self.done

    @property
    def done(self) -> bool:
        """Every source record of the range is decided (target records left over are outside it)."""
        return self._src_ended and not self._src

    # --- deciding ----------------------------------------------------------------------------------

    def step(self) -> None:
        """Decide as much as the records fed so far allow."""
        src, tgt = self._src, self._tgt
        while src:
            if not tgt:
                if not self._tgt_ended:
                    return
                self._missing_record(src.popleft())
                continue
            s, t = src[0], tgt[0]
            if s.digest == t.digest:
                src.popleft()
                tgt.popleft()
                self._match(s, t)
                continue
            if self._recent_count.get(t.digest):
                tgt.popleft()
                self.outcome.target_records += 1
                self._record("duplicate", None, t.offset)
                continue
            if (len(src) < self.window and not self._src_ended) or (
                len(tgt) < self.window and not self._tgt_ended
            ):
                return  # not enough look-ahead yet
            self._resync()

    def _resync(self) -> None:
        """At a mismatch: skip to the nearest point where both sides agree and classify what was skipped."""
        src, tgt = self._src, self._tgt
        best: tuple[int, int] | None = None
        for width in (*(w for w in _WINDOWS if w < self.window), self.window):
            firsts: dict[bytes, int] = {}
            for position, entry in enumerate(islice(tgt, width)):
                firsts.setdefault(entry.digest, position)
            for a, entry in enumerate(islice(src, width)):
                if best is not None and a >= best[0] + best[1]:
                    break
                found = firsts.get(entry.digest)
                if found is not None and (best is None or a + found < best[0] + best[1]):
                    best = (a, found)
            if best is not None or (width >= len(src) and width >= len(tgt)):
                break
        if best is None:
            # nothing of the source's next `window` records is in the target's next `window`: all missing
            for _ in range(min(self.window, len(src))):
                self._missing_record(src.popleft())
            return
        a, b = best
        if self.outcome.matched == 0 and self.head_unmatched_ok:
            for _ in range(b):
                tgt.popleft()
                self.outcome.before_range += 1
            for _ in range(a):
                self._missing_record(src.popleft())
        elif a == b:
            for _ in range(a):
                s, t = src.popleft(), tgt.popleft()
                self.outcome.source_records += 1
                self.outcome.target_records += 1
                self._record("differing", s.offset, t.offset)
        else:
            for _ in range(a):
                self._missing_record(src.popleft())
            for _ in range(b):
                self._extra_record(tgt.popleft())

    def _match(self, s: Entry, t: Entry) -> None:
        out = self.outcome
        out.matched += 1
        out.source_records += 1
        out.target_records += 1
        if out.first is None:
            out.first = (s.offset, t.offset)
        out.last = (s.offset, t.offset)
        self._recent.append(s.digest)
        self._recent_count[s.digest] += 1
        if len(self._recent) > _RECENT:
            old = self._recent.popleft()
            self._recent_count[old] -= 1
            if not self._recent_count[old]:
                del self._recent_count[old]

    def _missing_record(self, s: Entry) -> None:
        self.outcome.source_records += 1
        self._hold(self._missing, self._extra, s.digest, s.offset, source_side=True)

    def _extra_record(self, t: Entry) -> None:
        self.outcome.target_records += 1
        self._hold(self._extra, self._missing, t.digest, t.offset, source_side=False)

    def _hold(
        self,
        mine: dict[bytes, deque[int]],
        theirs: dict[bytes, deque[int]],
        digest: bytes,
        offset: int,
        source_side: bool,
    ) -> None:
        """An unmatched record: paired with an unmatched one of the other side with the same digest (a
        reorder), else kept for such a pairing (up to `_PENDING`; past that it is reported as is)."""
        waiting = theirs.get(digest)
        if waiting:
            other = waiting.popleft()
            if not waiting:
                del theirs[digest]
            self._pending -= 1
            if source_side:
                self._record("reordered", offset, other)
            else:
                self._record("reordered", other, offset)
            return
        if self._pending < _PENDING:
            mine.setdefault(digest, deque()).append(offset)
            self._pending += 1
        elif source_side:
            self._record("missing", offset, None)
        else:
            self._record("extra", None, offset)

    def _record(self, kind: Kind, source_offset: int | None, target_offset: int | None) -> None:
        self.outcome.counts[kind] += 1
        if len(self.outcome.differences) < self.limit:
            self.outcome.differences.append(Difference(kind, source_offset, target_offset))

    def finish(self) -> Outcome:
        """The outcome, once `done`: the records still unpaired are missing and extra."""
        self.step()
        assert self.done, "finish() before every source record was decided"
        for digest_offsets in self._missing.values():
            for offset in digest_offsets:
                self._record("missing", offset, None)
        for digest_offsets in self._extra.values():
            for offset in digest_offsets:
                self._record("extra", None, offset)
        self._missing.clear()
        self._extra.clear()
        self._pending = 0
        self.outcome.differences.sort(key=_order)
        return self.outcome


class KeyedComparison:
    """Compares a compacted partition with its copy: the latest record per key.

    The source is read to its current end, the target to its end: a key whose latest source record lies
    past the stored progress (`end`, exclusive) is not copied yet and not compared. Memory: one digest
    per key and side.
    """

    def __init__(self, end: int, limit: int = 1000) -> None:
        self.end = end
        self.limit = limit
        self.outcome = Outcome()
        self._source: dict[bytes | None, tuple[int, bytes | None]] = {}
        self._target: dict[bytes | None, tuple[int, bytes | None]] = {}

    def add_source(self, key: bytes | None, offset: int, digest: bytes | None) -> None:
        """One source record (`digest` None for a tombstone)."""
        self.outcome.source_records += offset < self.end
        self._source[key] = (offset, digest)

    def add_target(self, key: bytes | None, offset: int, digest: bytes | None) -> None:
        self.outcome.target_records += 1
        self._target[key] = (offset, digest)

    def finish(self) -> Outcome:
        out = self.outcome
        differences: list[Difference] = []
        for key, (offset, digest) in self._source.items():
            copy = self._target.pop(key, None)
            if offset >= self.end:
                continue  # not copied yet
            if copy is None or copy[1] is None:
                if digest is not None:
                    differences.append(Difference("missing", offset, None))
            elif digest is None:
                differences.append(Difference("extra", None, copy[0]))
            elif copy[1] == digest:
                out.matched += 1
            else:
                differences.append(Difference("differing", offset, copy[0]))
        differences += [Difference("extra", None, o) for o, d in self._target.values() if d is not None]
        self._source.clear()
        self._target.clear()
        for diff in sorted(differences, key=_order):
            out.counts[diff.kind] += 1
            if len(out.differences) < self.limit:
                out.differences.append(diff)
        return out


def _order(diff: Difference) -> tuple[int, int]:
    """Differences in source order; extra records (no source offset) first, in target order."""
    source = -1 if diff.source_offset is None else diff.source_offset
    return source, -1 if diff.target_offset is None else diff.target_offset


def compare(
    source: Sequence[Entry],
    target: Sequence[Entry],
    window: int = DEFAULT_WINDOW,
    head_unmatched_ok: bool = False,
) -> Outcome:
    """Compare two whole sequences (tests, small partitions)."""
    comparison = SequenceComparison(window, head_unmatched_ok)
    comparison.add_source(source)
    comparison.add_target(target)
    comparison.end_source()
    comparison.end_target()
    return comparison.finish()
