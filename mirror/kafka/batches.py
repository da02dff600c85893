"""Kafka record batches as bytes: passed through re-stamped, rebuilt or dropped (docs/record-batches.md).

Pure functions over ``bytes``: no I/O, no client. A fetched batch either goes to the target as it came
(the same records, the same compression), with only the fields a producer owns re-stamped and its
CRC-32C recomputed, or it is decoded and rebuilt, or it is dropped (control batches, aborted
transactions, batches compaction emptied). `plan` decides from the header alone; `AbortedTransactions`
adds what a ``read_committed`` fetch response says about aborted transactions.

The records are decoded (`decode`) and built (`rebuild`) with aiokafka's C record classes (its Python
builder for a batch that starts with records without a timestamp, see `rebuild`); the CRC is the
`crc32c` package's (`crc32c_native` says whether it uses the CPU's CRC instructions).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

import crc32c as _crc32c
from aiokafka.record.default_records import (
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
    _DefaultRecordBatchBuilderPy,
)
from aiokafka.record.memory_records import MemoryRecords

from mirror.errors import MirrorError
from mirror.kafka.records import RecordData, SourceRecord

__all__ = [
    "NO_TIMESTAMP",
    "AbortedTransactions",
    "Action",
    "BatchHeader",
    "Chunk",
    "Codec",
    "CorruptBatch",
    "RawBatch",
    "SourceBatch",
    "crc32c",
    "crc32c_native",
    "decode",
    "next_sequence",
    "pieces",
    "plan",
    "rebuild",
    "restamp",
    "split",
    "verified",
    "verify",
]

# The v2 batch header (docs/record-batches.md): every field big-endian, 61 bytes.
_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE: Final = _HEADER.size  # 61
#: Bytes before the batch's length field counts from: base offset (8) + length (4).
LOG_OVERHEAD: Final = 12
_BASE_OFFSET: Final = 0
_LEADER_EPOCH: Final = 12
_MAGIC: Final = 16
_CRC: Final = 17
#: The CRC covers the bytes from here (the attributes) to the end of the batch.
_ATTRIBUTES: Final = 21
_PRODUCER: Final = 43  # producer id (8), producer epoch (2), base sequence (4)
_PRODUCER_FIELDS: Final = struct.Struct(">qhi")

_CODEC_MASK: Final = 0x07
_TIMESTAMP_TYPE_MASK: Final = 0x08
_TRANSACTIONAL_MASK: Final = 0x10
_CONTROL_MASK: Final = 0x20
_DELETE_HORIZON_MASK: Final = 0x40
_LOG_APPEND_TIME: Final = 1
_NO_PRODUCER_ID: Final = -1
_NO_LEADER_EPOCH: Final = -1
#: Sequences wrap to 0 after Int32 max (Kafka's ``DefaultRecordBatch.incrementSequence``).
_SEQUENCE_MODULUS: Final = 1 << 31
#: A control record's key: version (Int16), type (Int16); type 0 is an abort marker, 1 a commit marker.
_CONTROL_KEY: Final = struct.Struct(">hh")
_ABORT_MARKER: Final = 0
#: The timestamp of a record that has none (Kafka's ``RecordBatch.NO_TIMESTAMP``): every magic 0 record,
#: and records written or up-converted without one (docs/record-batches.md, "Records without a timestamp").
NO_TIMESTAMP: Final = -1
#: The rebuilt batch holds every record given: no size cap in the builder.
_UNBOUNDED: Final = (1 << 31) - 1

crc32c: Final = _crc32c.crc32c
"""CRC-32C (Castagnoli) of a bytes-like object: the `crc32c` package, with the CPU's CRC instructions
(SSE 4.2, ARMv8) where there are: about ten times aiokafka's own C table (docs/record-batches.md)."""


def crc32c_native() -> bool:
    """Whether `crc32c` runs on the CPU's CRC instructions (else a C table, about ten times slower)."""
    return bool(_crc32c.hardware_based)


class CorruptBatch(MirrorError):
    """Bytes that are not a whole, valid record batch (short, wrong magic, or a CRC that does not match)."""

    kind = "corrupt-batch"


class Codec(IntEnum):
    """The compression codec of a batch: its attributes' lowest three bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class Action(Enum):
    """What the data path does with one fetched batch."""

    #: Produce the source bytes themselves, re-stamped (`restamp`).
    PASS = "pass"
    #: Decode the records and build a new batch of them (`decode`, `rebuild`).
    REBUILD = "rebuild"
    #: Nothing of it reaches the target (control batch, aborted transaction, emptied by compaction).
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The fixed 61-byte header of a v2 record batch (for magic 0/1 only the first 17 bytes mean this)."""

    base_offset: int
    #: Bytes of the batch after this field: the whole batch is ``length + 12`` bytes.
    length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, at: int = 0) -> BatchHeader:
        """The header of the batch starting at ``at``; `CorruptBatch` when it is short or not magic 2."""
        if len(data) - at < HEADER_SIZE:
            raise CorruptBatch(f"a record batch header needs {HEADER_SIZE} bytes, {len(data) - at} left")
        header = cls(*_HEADER.unpack_from(data, at))
        if header.magic != 2:
            raise CorruptBatch(f"record batch magic {header.magic}: only magic 2 has this header")
        return header

    @property
    def size(self) -> int:
        """Bytes of the whole batch."""
        return self.length + LOG_OVERHEAD

    @property
    def codec(self) -> Codec:
        return Codec(self.attributes & _CODEC_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_MASK)

    @property
    def log_append_time(self) -> bool:
        """The broker stamped the batch's time (``message.timestamp.type=LogAppendTime``)."""
        return bool(self.attributes & _TIMESTAMP_TYPE_MASK)

    @property
    def delete_horizon(self) -> bool:
        """The log cleaner set a delete horizon: the first timestamp is that horizon, not a record's time
        (docs/record-batches.md)."""
        return bool(self.attributes & _DELETE_HORIZON_MASK)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def has_gaps(self) -> bool:
        """Compaction removed records from it: fewer records than offsets (docs/record-batches.md)."""
        return self.last_offset_delta + 1 != self.record_count


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One batch of a fetch response: its header (None for the old magic 0/1 formats) and its bytes."""

    header: BatchHeader | None
    data: memoryview
    base_offset: int
    magic: int
    #: its CRC was checked against its bytes already (`verified`): `restamp` does not check it again
    checked: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


_PREFIX: Final = struct.Struct(">qi")  # base offset, length: the same in every message format


def split(records: bytes | bytearray | memoryview) -> Iterator[RawBatch]:
    """The whole batches in a partition's fetched bytes, in order. A trailing partial batch (a fetch
    response may end inside one) is left out; bytes that cannot be a batch raise `CorruptBatch`."""
    view = memoryview(records)
    at, end = 0, len(view)
    while end - at >= _MAGIC + 1:
        base_offset, length = _PREFIX.unpack_from(view, at)
        if length < _MAGIC + 1 - LOG_OVERHEAD:
            raise CorruptBatch(f"record batch at offset {base_offset}: length {length} is too small")
        size = length + LOG_OVERHEAD
        if end - at < size:
            return
        magic = view[at + _MAGIC]
        header = BatchHeader.parse(view, at) if magic == 2 else None
        yield RawBatch(header, view[at : at + size], base_offset, magic)
        at += size


def plan(batch: RawBatch) -> Action:
    """Pass through, rebuild or drop, from the header alone (docs/record-batches.md, "Which batches
    pass")."""
    h = batch.header
    if h is None:
        return Action.REBUILD  # magic 0/1: a v2 batch of the same records
    if h.is_control or h.record_count == 0:
        return Action.DROP
    if h.has_gaps or h.log_append_time or h.delete_horizon:
        return Action.REBUILD
    return Action.PASS


class AbortedTransactions:
    """The ``read_committed`` filter of one partition, as Java's consumer applies it: a fetch response
    lists the aborted transactions in its range (producer id, first offset); a transactional batch of
    such a producer is dropped from that offset until the producer's abort marker.

    Keep one per partition across fetches of one read position; `add` each response's list."""

    __slots__ = ("_aborting", "_pending")

    def __init__(self, aborted: Iterable[tuple[int, int]] = ()) -> None:
        self._pending: list[tuple[int, int]] = []  # (first offset, producer id), a heap
        self._aborting: set[int] = set()
        self.add(aborted)

    def add(self, aborted: Iterable[tuple[int, int]]) -> None:
        """The ``aborted_transactions`` of one fetch response: (producer id, first offset) pairs."""
        for producer_id, first_offset in aborted:
            heapq.heappush(self._pending, (first_offset, producer_id))

    def plan(self, batch: RawBatch) -> Action:
        """`plan`, plus: DROP for a batch of an aborted transaction. Call it for every batch, in order
        (an abort marker ends its producer's aborted range)."""
        h = batch.header
        if h is not None and h.producer_id != _NO_PRODUCER_ID:
            while self._pending and self._pending[0][0] <= h.last_offset:
                self._aborting.add(heapq.heappop(self._pending)[1])
            if h.is_control:
                if _is_abort_marker(batch):
                    self._aborting.discard(h.producer_id)
            elif h.is_transactional and h.producer_id in self._aborting:
                return Action.DROP
        return plan(batch)


def _is_abort_marker(batch: RawBatch) -> bool:
    for record in DefaultRecordBatch(bytes(batch.data)):
        key = record.key
        return key is not None and len(key) >= 4 and _CONTROL_KEY.unpack_from(key)[1] == _ABORT_MARKER
    return False


def verify(batch: RawBatch) -> None:
    """`CorruptBatch` unless the batch's CRC-32C matches its bytes (v2 batches; older formats are
    checked when decoded)."""
    h = batch.header
    if h is not None and crc32c(batch.data[_ATTRIBUTES:]) != h.crc:
        raise CorruptBatch(f"record batch at offset {h.base_offset}: CRC-32C does not match its bytes")


def verified(batch: RawBatch) -> RawBatch:
    """The batch, its CRC checked (`verify`) and marked so: a CRC pass over a large batch costs about a
    millisecond, and `restamp` need not make it again."""
    verify(batch)
    return RawBatch(batch.header, batch.data, batch.base_offset, batch.magic, checked=True)


def restamp(
    batch: RawBatch,
    *,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    transactional: bool,
) -> bytearray:
    """The batch's bytes for a produce request of the target's producer: base offset 0, no partition
    leader epoch, this producer's id, epoch, base sequence and transactional bit; CRC-32C recomputed.
    Records, timestamps and compression are the source's, byte for byte. The source CRC is checked
    first (`CorruptBatch`), so a damaged batch never goes out under a fresh CRC."""
    h = batch.header
    if h is None:
        raise CorruptBatch(
            f"record batch at offset {batch.base_offset}: magic {batch.magic} is rebuilt, not re-stamped"
        )
    if not batch.checked:
        verify(batch)
    out = bytearray(batch.data)
    struct.pack_into(">q", out, _BASE_OFFSET, 0)
    struct.pack_into(">i", out, _LEADER_EPOCH, _NO_LEADER_EPOCH)
    attributes = (
        (h.attributes | _TRANSACTIONAL_MASK) if transactional else (h.attributes & ~_TRANSACTIONAL_MASK)
    )
    struct.pack_into(">h", out, _ATTRIBUTES, attributes)
    _PRODUCER_FIELDS.pack_into(out, _PRODUCER, producer_id, producer_epoch, base_sequence)
    struct.pack_into(">I", out, _CRC, crc32c(memoryview(out)[_ATTRIBUTES:]))
    return out


def decode(batch: RawBatch) -> list[SourceRecord]:
    """The records of one batch, with their source offsets (any magic; CRC checked, `CorruptBatch` if
    it does not match). A LogAppendTime batch gives its records the broker's time, as consumers see it."""
    data = bytes(batch.data)
    if batch.header is not None:
        verify(batch)
        return list(DefaultRecordBatch(data))
    found = MemoryRecords(data).next_batch()
    if found is None:
        raise CorruptBatch(f"record batch at offset {batch.base_offset}: not a whole batch")
    if not found.validate_crc():
        raise CorruptBatch(f"record batch at offset {batch.base_offset}: CRC does not match its bytes")
    # aiokafka reads "no timestamp" (magic 0; -1 in magic 1) as None; a consumer reads -1
    return [r if r.timestamp is not None else _Untimed(r.offset, r.key, r.value) for r in found]


@dataclass(frozen=True, slots=True)
class _Untimed:
    """An old-format record without a timestamp, as a consumer reads it (`NO_TIMESTAMP`)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = NO_TIMESTAMP
    headers: tuple[tuple[str, bytes | None], ...] = ()


def rebuild(
    records: Sequence[RecordData],
    *,
    codec: Codec,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    transactional: bool,
) -> bytearray:
    """One v2 batch of ``records`` (timestamps, keys, values, headers kept; offset deltas 0..n-1),
    compressed with ``codec`` (aiokafka's C builder always compresses; its Python builder, used below,
    leaves a batch uncompressed when compression would not shrink it), stamped for the target's producer
    like `restamp` does.

    Records without a timestamp (`NO_TIMESTAMP`) keep it, as in Kafka's own builder. aiokafka's C
    builder takes a first timestamp of -1 for "no record yet": a batch starting with such records and
    holding others would give them the first other record's time. That batch (old-format data, or a
    merge across the source's format upgrade) is built by aiokafka's Python builder, which has no such
    sentinel (docs/record-batches.md, "Records without a timestamp"); any other costs one comparison."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    kind = DefaultRecordBatchBuilder
    if records[0].timestamp == NO_TIMESTAMP and any(r.timestamp != NO_TIMESTAMP for r in records):
        kind = _DefaultRecordBatchBuilderPy
    builder = kind(2, int(codec), int(transactional), producer_id, producer_epoch, base_sequence, _UNBOUNDED)
    append = builder.append
    for delta, r in enumerate(records):
        headers = r.headers
        if headers.__class__ is not list:
            headers = list(headers)
        append(delta, r.timestamp, r.key, r.value, headers)
    built: bytearray = builder.build()
    return built


def next_sequence(base_sequence: int, record_count: int) -> int:
    """The base sequence of the batch after one of ``record_count`` records at ``base_sequence``
    (sequences wrap to 0 after Int32 max, as the broker expects)."""
    return (base_sequence + record_count) % _SEQUENCE_MODULUS


class Chunk:
    """One fetched source batch on its way to the target: its bytes passed through (``raw``, decoded only
    when `records` is asked for) or its records (decoded, to be built into a new batch). Offsets are
    the source's; ``newest_timestamp`` is the batch's newest record time; ``size`` its bytes."""

    __slots__ = (
        "_records",
        "_value_bytes",
        "count",
        "first_offset",
        "last_offset",
        "newest_timestamp",
        "raw",
        "size",
    )

    def __init__(self, raw: RawBatch | None = None, records: list[SourceRecord] | None = None) -> None:
        self.raw = raw
        self._records = records
        self._value_bytes: int | None = None
        if raw is not None and raw.header is not None:
            h = raw.header
            self.first_offset, self.last_offset = h.base_offset, h.last_offset
            self.count, self.newest_timestamp, self.size = h.record_count, h.max_timestamp, raw.size
        elif records:
            self.first_offset, self.last_offset = int(records[0].offset), int(records[-1].offset)
            self.count = len(records)
            self.newest_timestamp = max(records[-1].timestamp, records[0].timestamp)
            self.size = self._value_bytes = sum([len(v) for r in records if (v := r.value) is not None])
        else:
            raise ValueError("a chunk is a v2 batch to pass through, or at least one record")

    @classmethod
    def of(cls, records: list[SourceRecord]) -> Chunk:
        return cls(None, records)

    @property
    def records(self) -> list[SourceRecord]:
        """Its records in offset order (a pass-through batch is decoded on the first call, CRC checked)."""
        if self._records is None:
            assert self.raw is not None
            self._records = decode(self.raw)
        return self._records

    @property
    def value_bytes(self) -> int:
        """The bytes of its records' values (what `mirror_bytes_total` and the throttle count, as Java's
        ``byte-count``): a pass-through batch is walked in C for it, once, without keeping its records."""
        if self._value_bytes is None:
            if self._records is not None:
                self._value_bytes = sum([len(v) for r in self._records if (v := r.value) is not None])
            else:
                assert self.raw is not None
                walked = DefaultRecordBatch(self.raw.data)
                self._value_bytes = sum([len(v) for r in walked if (v := r.value) is not None])
        return self._value_bytes

    @property
    def contiguous(self) -> bool:
        """Its offsets have no gaps (always so for a pass-through batch)."""
        return self.last_offset - self.first_offset + 1 == self.count


class SourceBatch:
    """What one fetch brought of one source partition, in offset order: its chunks (one per source batch
    that reaches the target). ``SourceBatch(topic, partition, records)`` makes one chunk of records."""

    __slots__ = ("chunks", "partition", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        records: list[SourceRecord] | None = None,
        *,
        chunks: list[Chunk] | None = None,
    ) -> None:
        self.topic, self.partition = topic, partition
        self.chunks: list[Chunk] = chunks if chunks is not None else [Chunk.of(records or [])]

    @property
    def records(self) -> list[SourceRecord]:
        """Every record, decoded (pass-through chunks are decoded by this: the slow path only)."""
        if len(self.chunks) == 1:
            return self.chunks[0].records
        return [r for c in self.chunks for r in c.records]

    @property
    def first_offset(self) -> int:
        return self.chunks[0].first_offset

    @property
    def last_offset(self) -> int:
        return self.chunks[-1].last_offset

    @property
    def count(self) -> int:
        return sum([c.count for c in self.chunks])

    def value_bytes(self) -> int:
        """The bytes of its records' values (`Chunk.value_bytes`)."""
        return sum([c.value_bytes for c in self.chunks])

    def __repr__(self) -> str:
        return f"SourceBatch({self.topic!r}, {self.partition}, {self.first_offset}..{self.last_offset})"


#: Bytes a record adds to a v2 batch beyond its key, value and headers, at most: its length, key length,
#: value length, header count and offset delta (varints, 5 bytes each at most), its timestamp delta (a
#: varlong, 10) and its attributes (1) (docs/record-batches.md, "The v2 batch").
RECORD_OVERHEAD: Final = 36
#: ...and each header beyond its name (UTF-8) and value: their lengths (varints, 5 bytes each at most).
HEADER_OVERHEAD: Final = 10


def record_size(r: RecordData) -> int:
    """At most the bytes ``r`` takes in an uncompressed v2 batch, whatever else the batch holds."""
    size = RECORD_OVERHEAD + len(r.key or b"") + len(r.value or b"")
    for name, value in r.headers:
        size += HEADER_OVERHEAD + len(name.encode()) + len(value or b"")
    return size


def records_size(records: Sequence[RecordData]) -> int:
    """At most the bytes ``records`` take in an uncompressed v2 batch beyond its header (`HEADER_SIZE`):
    a batch of them is at most ``HEADER_SIZE + records_size(records)`` bytes."""
    return sum([record_size(r) for r in records])


def pieces(chunks: Sequence[Chunk], per_batch: int, max_bytes: int) -> list[Chunk]:
    """The target batches for ``chunks``, in order: a pass-through chunk is one (unless ``per_batch``
    > 0 holds fewer records than it has); decoded records are cut into batches of at most ``per_batch``
    records (0: no limit) and about ``max_bytes`` bytes (a record larger than that goes alone)."""
    out: list[Chunk] = []
    for chunk in chunks:
        if chunk.raw is not None and (per_batch <= 0 or chunk.count <= per_batch):
            out.append(chunk)
            continue
        run: list[SourceRecord] = []
        size = 0
        for r in chunk.records:
            grown = size + record_size(r)
            if run and ((0 < per_batch <= len(run)) or grown > max_bytes):
                out.append(Chunk.of(run))
                run, grown = [], record_size(r)
            run.append(r)
            size = grown
        if run:
            out.append(Chunk.of(run))
    return out
