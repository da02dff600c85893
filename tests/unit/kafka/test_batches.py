"""`mirror.kafka.batches`: a batch passed through (re-stamped) or rebuilt carries exactly the source's
records, with a valid CRC-32C; control batches, aborted transactions and emptied batches are dropped.

Source batches are built the way brokers hand them out: every codec, null keys and values, headers,
records without a timestamp (-1), offset gaps (compaction), control batches, transactional or not. They
are built with aiokafka's Python builder: its C builder takes a first timestamp of -1 for "no record
yet" and would give records without a timestamp the next record's time (docs/record-batches.md)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from aiokafka.record.default_records import (
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
    _DefaultRecordBatchBuilderPy,
    _DefaultRecordBatchPy,
)
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mirror.kafka import batches
from mirror.kafka.batches import Action, Codec, CorruptBatch

INT32_MAX = (1 << 31) - 1
#: A record without a timestamp (magic 0, or written without one): Kafka's ``RecordBatch.NO_TIMESTAMP``.
NO_TIMESTAMP = -1


@dataclass(frozen=True)
class Rec:
    offset_delta: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


small_bytes = st.binary(max_size=40) | st.sampled_from([b"a" * 300, b"0123456789" * 50])
headers = st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=12)), max_size=3)


@st.composite
def source_records(draw: st.DrawFn, *, gaps: bool) -> list[Rec]:
    count = draw(st.integers(1, 12))
    steps = [draw(st.integers(1, 4)) if gaps else 1 for _ in range(count)]
    if gaps and all(s == 1 for s in steps):
        steps[-1] = 2  # at least one gap
    deltas, d = [], 0
    for i, step in enumerate(steps):
        d = d + step if i else step - 1
        deltas.append(d)
    first = draw(st.integers(0, 1 << 41))
    return [
        Rec(
            delta,
            draw(st.just(NO_TIMESTAMP) | st.integers(max(0, first - 5000), first + 5000)),
            draw(st.none() | small_bytes),
            draw(st.none() | small_bytes),
            draw(headers),
        )
        for delta in deltas
    ]


def _recrc(raw: bytearray) -> bytearray:
    struct.pack_into(">I", raw, 17, batches.crc32c(memoryview(raw)[21:]))
    return raw


def build(
    records: list[Rec],
    *,
    codec: Codec = Codec.NONE,
    transactional: bool = False,
    producer: tuple[int, int, int] = (-1, -1, -1),
    base_offset: int = 0,
    leader_epoch: int = 0,
    trailing_gap: int = 0,
    control: bool = False,
    log_append_time: int | None = None,
) -> bytes:
    """A batch as a broker stores it (base offset and leader epoch set; they are outside the CRC)."""
    builder = _DefaultRecordBatchBuilderPy(2, int(codec), int(transactional), *producer, INT32_MAX)
    for r in records:
        builder.append(r.offset_delta, r.timestamp, r.key, r.value, r.headers)
    raw = builder.build()
    struct.pack_into(">qii", raw, 0, base_offset, len(raw) - 12, leader_epoch)
    if trailing_gap:  # compaction removed the last records: the header keeps the last offset delta
        (last,) = struct.unpack_from(">i", raw, 23)
        struct.pack_into(">i", raw, 23, last + trailing_gap)
    attributes = struct.unpack_from(">h", raw, 21)[0]
    if control:
        attributes |= 0x20
    if log_append_time is not None:
        attributes |= 0x08
        struct.pack_into(">q", raw, 35, log_append_time)
    struct.pack_into(">h", raw, 21, attributes)
    return bytes(_recrc(raw))


def only(data: bytes) -> batches.RawBatch:
    [batch] = list(batches.split(data))
    return batch


def _rebuilt(records: list[Rec] | list[batches.SourceRecord], codec: Codec = Codec.NONE) -> bytes:
    return bytes(
        batches.rebuild(
            records, codec=codec, producer_id=3, producer_epoch=0, base_sequence=0, transactional=False
        )
    )


def fields(records: object) -> list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]:
    return [(r.timestamp, r.key, r.value, list(r.headers)) for r in records]  # type: ignore[attr-defined]


codecs = st.sampled_from(list(Codec))
producers = st.tuples(st.integers(0, 1 << 40), st.integers(0, 32767), st.integers(0, INT32_MAX))


@settings(max_examples=150, deadline=None)
@given(
    records=source_records(gaps=False),
    codec=codecs,
    transactional=st.booleans(),
    source_producer=producers,
    target_producer=producers,
    target_transactional=st.booleans(),
    base_offset=st.integers(0, 1 << 50),
)
def test_a_passed_through_batch_carries_exactly_the_source_records(
    records: list[Rec],
    codec: Codec,
    transactional: bool,
    source_producer: tuple[int, int, int],
    target_producer: tuple[int, int, int],
    target_transactional: bool,
    base_offset: int,
) -> None:
    source = build(
        records,
        codec=codec,
        transactional=transactional,
        producer=source_producer,
        base_offset=base_offset,
        leader_epoch=7,
    )
    batch = only(source)
    assert batch.header is not None
    assert batches.plan(batch) is Action.PASS
    assert batches.AbortedTransactions().plan(batch) is Action.PASS
    pid, epoch, seq = target_producer
    out = batches.restamp(
        batch, producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=target_transactional
    )

    parsed = DefaultRecordBatch(bytes(out))
    assert parsed.validate_crc()
    assert (parsed.base_offset, parsed.producer_id, parsed.producer_epoch, parsed.base_sequence) == (
        0,
        pid,
        epoch,
        seq,
    )
    assert parsed.is_transactional is target_transactional
    assert not parsed.is_control_batch
    assert parsed.compression_type == batch.header.codec
    got = list(parsed)
    assert [r.offset for r in got] == [r.offset_delta for r in records]
    assert fields(got) == fields(records)
    header = batches.BatchHeader.parse(out)
    assert header.partition_leader_epoch == -1
    assert header.record_count == len(records)
    # the records' bytes are the source's, byte for byte: only the header changed
    assert out[61:] == source[61:]


@settings(max_examples=150, deadline=None)
@given(
    records=source_records(gaps=True),
    codec=codecs,
    transactional=st.booleans(),
    trailing_gap=st.integers(0, 3),
    target_producer=producers,
    base_offset=st.integers(0, 1 << 50),
)
@example(  # a record without a timestamp first: aiokafka's C builder took -1 for "none yet"
    records=[Rec(0, NO_TIMESTAMP, None, None, []), Rec(2, 0, None, None, [])],
    codec=Codec.NONE,
    transactional=False,
    trailing_gap=0,
    target_producer=(0, 0, 0),
    base_offset=0,
)
def test_a_batch_with_offset_gaps_is_rebuilt_with_exactly_the_source_records(
    records: list[Rec],
    codec: Codec,
    transactional: bool,
    trailing_gap: int,
    target_producer: tuple[int, int, int],
    base_offset: int,
) -> None:
    source = build(
        records,
        codec=codec,
        transactional=transactional,
        producer=(5, 1, 100) if transactional else (-1, -1, -1),
        base_offset=base_offset,
        trailing_gap=trailing_gap,
    )
    batch = only(source)
    assert batches.plan(batch) is Action.REBUILD
    decoded = batches.decode(batch)
    assert [r.offset for r in decoded] == [base_offset + r.offset_delta for r in records]
    pid, epoch, seq = target_producer
    out = batches.rebuild(
        decoded, codec=codec, producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=False
    )
    parsed = DefaultRecordBatch(bytes(out))
    assert parsed.validate_crc()
    assert (parsed.producer_id, parsed.producer_epoch, parsed.base_sequence) == (pid, epoch, seq)
    got = list(parsed)
    assert [r.offset for r in got] == list(range(len(records)))
    assert fields(got) == fields(records)
    assert not batches.BatchHeader.parse(out).has_gaps  # the broker takes it


@settings(max_examples=50, deadline=None)
@given(marker=st.sampled_from([0, 1]), codec=codecs, base_offset=st.integers(0, 1 << 40))
def test_control_batches_are_dropped(marker: int, codec: Codec, base_offset: int) -> None:
    record = Rec(0, 1_700_000_000_000, struct.pack(">hh", 0, marker), b"\x00\x00\x00\x00\x00\x00", [])
    batch = only(
        build(
            [record],
            codec=codec,
            transactional=True,
            producer=(9, 0, -1),
            base_offset=base_offset,
            control=True,
        )
    )
    assert batches.plan(batch) is Action.DROP
    assert batches.AbortedTransactions().plan(batch) is Action.DROP


def test_a_batch_compaction_emptied_is_dropped() -> None:
    raw = bytearray(DefaultRecordBatchBuilder(2, 0, 0, 4, 0, 0, INT32_MAX).build())
    struct.pack_into(">qi", raw, 0, 50, len(raw) - 12)
    struct.pack_into(">i", raw, 23, 9)  # the emptied batch keeps its last offset delta
    batch = only(bytes(_recrc(raw)))
    assert batch.header is not None and batch.header.record_count == 0
    assert batches.plan(batch) is Action.DROP


def _txn(base_offset: int, pid: int, value: bytes) -> bytes:
    return build(
        [Rec(0, 1, None, value, [])], transactional=True, producer=(pid, 0, 0), base_offset=base_offset
    )


def _marker(base_offset: int, pid: int, kind: int) -> bytes:
    key = struct.pack(">hh", 0, kind)
    return build(
        [Rec(0, 1, key, b"\x00" * 6, [])],
        transactional=True,
        producer=(pid, 0, -1),
        base_offset=base_offset,
        control=True,
    )


def test_read_committed_drops_the_batches_of_aborted_transactions_until_their_abort_marker() -> None:
    fetched = b"".join(
        [
            _txn(0, 7, b"committed"),
            _marker(1, 7, 1),  # commit
            _txn(2, 7, b"aborted-1"),
            _txn(3, 8, b"other producer"),
            _txn(4, 7, b"aborted-2"),
            _marker(5, 7, 0),  # abort
            _txn(6, 7, b"after the abort"),
        ]
    )
    txns = batches.AbortedTransactions([(7, 2)])
    kept = [batches.decode(b)[0].value for b in batches.split(fetched) if txns.plan(b) is Action.PASS]
    assert kept == [b"committed", b"other producer", b"after the abort"]


def test_a_commit_marker_does_not_end_an_aborted_range() -> None:
    txns = batches.AbortedTransactions()
    txns.add([(7, 0)])
    assert txns.plan(only(_marker(0, 7, 1))) is Action.DROP
    assert txns.plan(only(_txn(1, 7, b"x"))) is Action.DROP


def test_split_leaves_out_a_trailing_partial_batch() -> None:
    one = build([Rec(0, 1, b"k", b"v", [])], base_offset=10)
    two = build([Rec(0, 2, b"k", b"w", [])], base_offset=11)
    found = list(batches.split(one + two + two[:30]))
    assert [b.base_offset for b in found] == [10, 11]
    assert [b.size for b in found] == [len(one), len(two)]
    assert list(batches.split(one[:5])) == []


def test_split_refuses_a_length_no_batch_can_have() -> None:
    with pytest.raises(CorruptBatch, match="length 2 is too small"):
        list(batches.split(struct.pack(">qi", 0, 2) + bytes(20)))


def test_a_damaged_batch_is_never_passed_on_under_a_fresh_crc() -> None:
    raw = bytearray(build([Rec(0, 1, b"key", b"value", [])]))
    raw[-3] ^= 0xFF
    batch = only(bytes(raw))
    with pytest.raises(CorruptBatch, match="CRC-32C does not match"):
        batches.restamp(batch, producer_id=1, producer_epoch=0, base_sequence=0, transactional=False)
    with pytest.raises(CorruptBatch, match="CRC-32C does not match"):
        batches.decode(batch)


def test_a_log_append_time_batch_is_rebuilt_with_the_brokers_time() -> None:
    records = [Rec(0, 1000, None, b"a", []), Rec(1, 2000, None, b"b", [])]
    batch = only(build(records, log_append_time=99_000))
    assert batches.plan(batch) is Action.REBUILD
    assert [r.timestamp for r in batches.decode(batch)] == [99_000, 99_000]


def test_an_old_format_batch_is_rebuilt() -> None:
    builder = LegacyRecordBatchBuilder(1, 0, INT32_MAX)
    builder.append(40, 1234, b"k", b"v")
    builder.append(41, 1235, None, b"w")
    found = list(batches.split(bytes(builder.build())))  # uncompressed: one entry per record
    assert [(b.header, b.magic, b.base_offset) for b in found] == [(None, 1, 40), (None, 1, 41)]
    assert {batches.plan(b) for b in found} == {Action.REBUILD}
    decoded = [r for b in found for r in batches.decode(b)]
    assert [(r.offset, r.timestamp, r.key, r.value) for r in decoded] == [
        (40, 1234, b"k", b"v"),
        (41, 1235, None, b"w"),
    ]
    with pytest.raises(CorruptBatch, match="magic 1 is rebuilt"):
        batches.restamp(found[0], producer_id=1, producer_epoch=0, base_sequence=0, transactional=False)


def test_the_crc_runs_on_the_cpus_crc_instructions_and_agrees_with_aiokafkas() -> None:
    from aiokafka.record.util import calc_crc32c  # noqa: PLC0415

    assert batches.crc32c_native()  # x86-64 with SSE 4.2 or ARMv8: every machine we run on
    assert batches.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = bytes(range(256)) * 4099
    assert batches.crc32c(memoryview(data)[21:]) == calc_crc32c(data[21:])


def test_sequences_wrap_after_int32_max() -> None:
    assert batches.next_sequence(10, 5) == 15
    assert batches.next_sequence(INT32_MAX - 1, 2) == 0
    assert batches.next_sequence(INT32_MAX, 3) == 2


# --- chunks and the target batches they go as ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    sources=st.lists(st.tuples(source_records(gaps=False), st.booleans(), codecs), min_size=1, max_size=5),
    per_batch=st.integers(0, 6),
    max_bytes=st.integers(1, 2000),
)
@example(  # the failure once seen: a record without a timestamp (-1) came back with the next one's time
    sources=[([Rec(0, NO_TIMESTAMP, None, None, []), Rec(1, 0, None, None, [])], False, Codec.NONE)],
    per_batch=0,
    max_bytes=2000,
)
def test_pieces_carry_every_record_once_in_order_within_their_limits(
    sources: list[tuple[list[Rec], bool, Codec]], per_batch: int, max_bytes: int
) -> None:
    """Pass-through chunks stay whole batches (the source's bytes) unless ``per_batch`` holds fewer
    records; decoded records are cut by count and size, and rebuilt read back as they came; nothing
    is lost, repeated or reordered."""
    chunks, expected, base = [], [], 0
    for records, passed, codec in sources:
        raw = only(build(records, codec=codec, base_offset=base))
        chunk = batches.Chunk(raw) if passed else batches.Chunk.of(batches.decode(raw))
        assert (chunk.first_offset, chunk.last_offset, chunk.count) == (
            base,
            base + len(records) - 1,
            len(records),
        )
        assert chunk.contiguous
        chunks.append(chunk)
        expected += [(base + i, *f) for i, f in enumerate(fields(records))]
        base += len(records) + 3  # a gap between source batches
    batch = batches.SourceBatch("t", 0, chunks=chunks)
    assert (batch.first_offset, batch.last_offset) == (0, base - 4)
    assert batch.count == len(expected) == len(batch.records)

    out = batches.pieces(chunks, per_batch, max_bytes)
    got = [(r.offset, *f) for piece in out for r, f in zip(piece.records, fields(piece.records), strict=True)]
    assert got == expected
    for piece in out:
        if piece.raw is not None:  # passed through: one of the chunks, whole
            assert any(piece is c for c in chunks)
            assert per_batch == 0 or piece.count <= per_batch
        else:
            assert per_batch == 0 or piece.count <= per_batch
            assert piece.count == 1 or sum(batches.record_size(r) for r in piece.records) <= max_bytes
            assert fields(DefaultRecordBatch(_rebuilt(piece.records))) == fields(piece.records)


def test_a_pass_through_chunk_is_decoded_only_when_its_records_are_asked_for() -> None:
    records = [Rec(i, 1_700_000_000_000 + i, b"k", b"v" * i, []) for i in range(5)]
    raw = only(build(records, codec=Codec.LZ4, base_offset=40))
    chunk = batches.Chunk(raw)
    assert chunk._records is None
    assert (chunk.first_offset, chunk.last_offset, chunk.newest_timestamp) == (40, 44, 1_700_000_000_004)
    assert chunk.size == raw.size
    assert chunk.value_bytes == sum(range(5)) and chunk._records is None  # walked, not kept
    assert [r.offset for r in chunk.records] == [40, 41, 42, 43, 44]
    with pytest.raises(ValueError, match="at least one record"):
        batches.Chunk.of([])


# --- records without a timestamp (-1) ---------------------------------------------------------------


@pytest.mark.parametrize("codec", [Codec.NONE, Codec.LZ4])
@pytest.mark.parametrize(
    "times",
    [
        [-1],
        [-1, 0],
        [0, -1],
        [-1, -1, -1],
        [-1, 5, -1],
        [-1, -1, 1_700_000_000_000, -1, 7],
        [5, -1, 3],
        [0, 0],
    ],
)
def test_a_rebuilt_batch_keeps_records_without_a_timestamp(times: list[int], codec: Codec) -> None:
    """-1 is a timestamp like any other to Kafka's builder: the batch's first timestamp is the first
    record's, the max the largest, and each record reads back as it came (aiokafka's C builder took a
    leading -1 for "no record yet" and gave those records the next record's time)."""
    records = [Rec(i, t, b"k", b"v%d" % i, []) for i, t in enumerate(times)]
    out = _rebuilt(records, codec)
    header = batches.BatchHeader.parse(out)
    assert (header.first_timestamp, header.max_timestamp) == (times[0], max(times))
    for reader in (DefaultRecordBatch, _DefaultRecordBatchPy):
        assert [r.timestamp for r in reader(out)] == times
        assert fields(reader(out)) == fields(records)


def test_records_without_a_timestamp_keep_it_through_pieces_and_rebuild() -> None:
    """A broker's batch whose first records have no timestamp, cut by `pieces` and rebuilt."""
    times = [-1, -1, 1_700_000_000_000, -1, 1_700_000_000_005]
    source = build([Rec(i, t, b"k", b"v", []) for i, t in enumerate(times)], base_offset=10)
    chunk = batches.Chunk.of(batches.decode(only(source)))
    assert chunk.newest_timestamp == 1_700_000_000_005
    for per_batch in (0, 2, 3):
        got = [
            r.timestamp
            for p in batches.pieces([chunk], per_batch, 1 << 20)
            for r in DefaultRecordBatch(_rebuilt(p.records))
        ]
        assert got == times


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [0, 1])  # none, gzip
def test_old_format_records_without_a_timestamp_read_and_rebuild_as_minus_one(magic: int, codec: int) -> None:
    """Magic 0 records have no timestamp, magic 1 ones may have -1: a consumer reads -1 for both
    (aiokafka reads None); rebuilt, they keep -1, also next to records that have one."""
    builder = LegacyRecordBatchBuilder(magic, codec, INT32_MAX)
    builder.append(0, -1, b"k", b"a")  # magic 0 writes no timestamp at all
    builder.append(1, -1 if magic == 0 else 1_700_000_000_000, None, b"b")
    found = list(batches.split(bytes(builder.build())))
    decoded = [r for b in found for r in batches.decode(b)]
    expected = [-1, -1] if magic == 0 else [-1, 1_700_000_000_000]
    assert [(r.offset, r.timestamp, r.key, r.value) for r in decoded] == [
        (0, expected[0], b"k", b"a"),
        (1, expected[1], None, b"b"),
    ]
    chunk = batches.Chunk.of(decoded)
    assert chunk.newest_timestamp == max(expected)
    assert [r.timestamp for r in DefaultRecordBatch(_rebuilt(chunk.records))] == expected
