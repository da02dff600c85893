"""Wire formats of mirror.mm2.records against the Java MirrorMaker 2 bytes (docs/mm2-compat.md §1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.mm2.records import (
    MAX_STRING_BYTES,
    Checkpoint,
    Heartbeat,
    OffsetSync,
    RecordFormatError,
    SourceOffsetKey,
    checkpoint_offset_key,
    decode_source_offset,
    decode_source_offset_key,
    encode_source_offset,
    heartbeat_offset_key,
    java_default_partition,
    murmur2,
    source_offset_key,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


# --- golden bytes: the examples of docs/mm2-compat.md §1.2-§1.4, verbatim -----------------------------

HB_KEY = h("00 07 75 73 2d 77 65 73 74 00 07 75 73 2d 65 61 73 74")
HB_VALUE = h("00 00 | 00 00 01 8b cf e5 68 00")
CP_KEY = h("00 02 67 31 | 00 0e 75 73 2d 77 65 73 74 2e 6f 72 64 65 72 73 | 00 00 00 03")
CP_VALUE = h("00 00 | 00 00 00 00 00 00 03 e8 | 00 00 00 00 00 00 03 b6 | 00 00")
OS_KEY = h("00 06 6f 72 64 65 72 73 | 00 00 00 03")
OS_VALUE = h("00 00 00 00 00 00 03 e8 | 00 00 00 00 00 00 03 b6")

HEARTBEAT = Heartbeat("us-west", "us-east", 1700000000000)
CHECKPOINT = Checkpoint("g1", "us-west.orders", 3, 1000, 950, "")
OFFSET_SYNC = OffsetSync("orders", 3, 1000, 950)


def test_heartbeat_golden_bytes() -> None:
    """A heartbeat encodes to the 18-byte key and 10-byte value of §1.2."""
    assert len(HB_KEY) == 18
    assert len(HB_VALUE) == 10
    assert HEARTBEAT.encode_key() == HB_KEY
    assert HEARTBEAT.encode_value() == HB_VALUE
    assert Heartbeat.decode(HB_KEY, HB_VALUE) == HEARTBEAT


def test_checkpoint_golden_bytes() -> None:
    """A checkpoint encodes to the 24-byte key and 20-byte value of §1.3."""
    assert len(CP_KEY) == 24
    assert len(CP_VALUE) == 20
    assert CHECKPOINT.encode_key() == CP_KEY
    assert CHECKPOINT.encode_value() == CP_VALUE
    assert Checkpoint.decode(CP_KEY, CP_VALUE) == CHECKPOINT


def test_checkpoint_metadata_golden_bytes() -> None:
    """With metadata `m` the checkpoint value ends `03 b6 00 01 6d` (§1.3)."""
    value = Checkpoint("g1", "us-west.orders", 3, 1000, 950, "m").encode_value()
    assert value.endswith(h("03 b6 00 01 6d"))
    assert value == CP_VALUE[:-2] + h("00 01 6d")
    assert Checkpoint.decode(CP_KEY, value).metadata == "m"


def test_offset_sync_golden_bytes() -> None:
    """An offset sync encodes to the 12-byte key and 16-byte value of §1.4, with no version header."""
    assert len(OS_KEY) == 12
    assert len(OS_VALUE) == 16
    assert OFFSET_SYNC.encode_key() == OS_KEY
    assert OFFSET_SYNC.encode_value() == OS_VALUE
    assert OffsetSync.decode(OS_KEY, OS_VALUE) == OFFSET_SYNC
    assert OFFSET_SYNC.topic_partition == ("orders", 3)


def test_checkpoint_defaults_to_empty_metadata() -> None:
    """Metadata defaults to "" (OffsetAndMetadata never carries null)."""
    assert Checkpoint("g", "t", 0, 1, 2).metadata == ""
    assert Checkpoint("g", "t", 0, 1, 2).topic_partition == ("t", 0)


# --- decoder tolerance and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [(Heartbeat, HB_KEY, HB_VALUE), (Checkpoint, CP_KEY, CP_VALUE), (OffsetSync, OS_KEY, OS_VALUE)],
)
def test_decoders_ignore_trailing_bytes(
    cls: type[Heartbeat | Checkpoint | OffsetSync], key: bytes, value: bytes
) -> None:
    """Like Java's Struct reader, extra bytes after the known fields (a future version's) are ignored."""
    assert cls.decode(key + b"\x01\x02\x03", value + b"\xff" * 9) == cls.decode(key, value)


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [(Heartbeat, HB_KEY, HB_VALUE), (Checkpoint, CP_KEY, CP_VALUE), (OffsetSync, OS_KEY, OS_VALUE)],
)
def test_every_truncation_is_rejected(
    cls: type[Heartbeat | Checkpoint | OffsetSync], key: bytes, value: bytes
) -> None:
    """Every strict prefix of a key or a value raises RecordFormatError saying it is truncated."""
    for n in range(len(key)):
        with pytest.raises(RecordFormatError, match="truncated"):
            cls.decode(key[:n], value)
    for n in range(len(value)):
        with pytest.raises(RecordFormatError, match="truncated"):
            cls.decode(key, value[:n])


@pytest.mark.parametrize("version", [1, 2, -1, 0x7FFF])
def test_unknown_heartbeat_version_is_rejected(version: int) -> None:
    """Java 4.4 throws on a heartbeat value version other than 0 (KAFKA-20659); the error names it."""
    value = version.to_bytes(2, "big", signed=True) + HB_VALUE[2:]
    with pytest.raises(RecordFormatError, match=rf"version {version}\b"):
        Heartbeat.decode(HB_KEY, value)


@pytest.mark.parametrize("version", [1, 3, -2])
def test_unknown_checkpoint_version_is_rejected(version: int) -> None:
    """Java 4.4 throws on a checkpoint value version other than 0; the error names it."""
    value = version.to_bytes(2, "big", signed=True) + CP_VALUE[2:]
    with pytest.raises(RecordFormatError, match=rf"version {version}\b"):
        Checkpoint.decode(CP_KEY, value)


def test_version_is_checked_before_the_body_length() -> None:
    """An unknown version is reported as such even when the body is too short for version 0."""
    with pytest.raises(RecordFormatError, match="version 5"):
        Heartbeat.decode(HB_KEY, h("00 05"))


def test_negative_string_length_is_rejected() -> None:
    """A STRING length below zero (a Java null marker) is an error, as in Java."""
    with pytest.raises(RecordFormatError, match="negative"):
        OffsetSync.decode(h("ff ff 00 00 00 00"), OS_VALUE)


def test_malformed_utf8_is_replaced_like_java() -> None:
    """Java decodes malformed UTF-8 with U+FFFD instead of failing; so does the decoder."""
    key = h("00 02 c3 28 00 00 00 01")
    assert OffsetSync.decode(key, OS_VALUE).topic == "\ufffd("


def test_record_format_error_is_a_value_error() -> None:
    """RecordFormatError subclasses ValueError."""
    assert issubclass(RecordFormatError, ValueError)


# --- encoder limits -------------------------------------------------------------------------------------


def test_string_of_32767_bytes_is_accepted() -> None:
    """The longest STRING is 32767 bytes of UTF-8."""
    metadata = "x" * MAX_STRING_BYTES
    cp = Checkpoint("g", "t", 0, 1, 2, metadata)
    assert Checkpoint.decode(cp.encode_key(), cp.encode_value()).metadata == metadata


@pytest.mark.parametrize("metadata", ["x" * 32768, "\u00e9" * 16384, "\U0001f600" * 8192])
def test_string_over_32767_bytes_is_rejected(metadata: str) -> None:
    """Writing a STRING whose UTF-8 form is over 32767 bytes raises (counted in bytes, not characters)."""
    with pytest.raises(RecordFormatError, match="32767"):
        Checkpoint("g", "t", 0, 1, 2, metadata).encode_value()


def test_long_strings_are_rejected_in_keys_too() -> None:
    """The limit applies to every STRING field."""
    with pytest.raises(RecordFormatError, match="sourceClusterAlias"):
        Heartbeat("a" * 40000, "b", 0).encode_key()
    with pytest.raises(RecordFormatError, match="topic"):
        OffsetSync("t" * 40000, 0, 0, 0).encode_key()


@pytest.mark.parametrize(
    "record",
    [
        Heartbeat("a", "b", 2**63),
        Checkpoint("g", "t", 0, -(2**63) - 1, 0),
        Checkpoint("g", "t", 2**31, 0, 0),
        OffsetSync("t", 0, 0, 2**64),
        OffsetSync("t", -(2**31) - 1, 0, 0),
    ],
)
def test_numbers_out_of_range_are_rejected(record: Heartbeat | Checkpoint | OffsetSync) -> None:
    """INT32/INT64 fields refuse values Java's int/long cannot hold."""
    with pytest.raises(RecordFormatError, match="out of range"):
        record.encode_key()
        record.encode_value()


def test_records_are_frozen() -> None:
    """The record dataclasses are immutable."""
    with pytest.raises(AttributeError):
        OFFSET_SYNC.upstream_offset = 5  # type: ignore[misc]


# --- round trips ----------------------------------------------------------------------------------------


@given(TEXT, TEXT, INT64)
def test_heartbeat_round_trip(source: str, target: str, timestamp: int) -> None:
    """decode(encode(heartbeat)) is the same heartbeat."""
    hb = Heartbeat(source, target, timestamp)
    assert Heartbeat.decode(hb.encode_key(), hb.encode_value()) == hb


@given(TEXT, TEXT, INT32, INT64, INT64, TEXT)
def test_checkpoint_round_trip(
    group: str, topic: str, partition: int, up: int, down: int, metadata: str
) -> None:
    """decode(encode(checkpoint)) is the same checkpoint."""
    cp = Checkpoint(group, topic, partition, up, down, metadata)
    assert Checkpoint.decode(cp.encode_key(), cp.encode_value()) == cp


@given(TEXT, INT32, INT64, INT64)
def test_offset_sync_round_trip(topic: str, partition: int, up: int, down: int) -> None:
    """decode(encode(sync)) is the same sync, and the value is always 16 bytes."""
    sync = OffsetSync(topic, partition, up, down)
    assert len(sync.encode_value()) == 16
    assert OffsetSync.decode(sync.encode_key(), sync.encode_value()) == sync


# --- Connect offset store JSON (§1.5) -------------------------------------------------------------------


def test_source_offset_key_exact_bytes() -> None:
    """The MirrorSourceConnector key has Java's HashMap field order: cluster, partition, topic."""
    assert (
        source_offset_key("A", "orders", 0)
        == b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"orders"}]'
    )
    assert encode_source_offset(1234) == b'{"offset":1234}'


def test_heartbeat_and_checkpoint_offset_keys_exact_bytes() -> None:
    """The heartbeat and checkpoint connector keys have Java's field orders; their offset is 0."""
    assert (
        heartbeat_offset_key("B", "A")
        == b'["MirrorHeartbeatConnector",{"sourceClusterAlias":"B","targetClusterAlias":"A"}]'
    )
    assert (
        checkpoint_offset_key("g1", "A.orders", 0)
        == b'["MirrorCheckpointConnector",{"partition":0,"topic":"A.orders","group":"g1"}]'
    )
    assert encode_source_offset(0) == b'{"offset":0}'


def test_offset_key_connector_name_is_configurable() -> None:
    """In Connect mode the connector name is the user's, not the class's simple name."""
    assert source_offset_key("A", "t", 1, connector="mm2-a-b").startswith(b'["mm2-a-b",{"cluster"')


def test_json_escaping_matches_jackson() -> None:
    """Escapes are those of Connect's Jackson (bytes produced by Java JsonConverter 4.3.1).

    Controls get short forms or upper-case `\\u00XX`, non-BMP characters become an escaped surrogate
    pair, other non-ASCII stays raw UTF-8, and `/` is not escaped.
    """
    key = source_offset_key('c"\\\x01\x1f\n\t\r\b\f/', "t\u00e9\U0001f600", 7)
    assert key == (
        b'["MirrorSourceConnector",{"cluster":"c\\"\\\\\\u0001\\u001F\\n\\t\\r\\b\\f/",'
        b'"partition":7,"topic":"t\xc3\xa9\\uD83D\\uDE00"}]'
    )
    assert json.loads(key) == [
        "MirrorSourceConnector",
        {"cluster": 'c"\\\x01\x1f\n\t\r\b\f/', "partition": 7, "topic": "t\u00e9\U0001f600"},
    ]


def test_offset_numbers_must_be_ints() -> None:
    """A bool is not written as a partition or an offset."""
    with pytest.raises(TypeError):
        source_offset_key("A", "t", True)
    with pytest.raises(TypeError):
        encode_source_offset(False)


def test_decode_source_offset_key_any_field_order() -> None:
    """Keys are decoded whatever the field order and spacing."""
    expected = SourceOffsetKey("MirrorSourceConnector", "A", "orders", 0)
    assert decode_source_offset_key(source_offset_key("A", "orders", 0)) == expected
    other_order = b'[ "MirrorSourceConnector" , {"topic": "orders", "partition": 0, "cluster": "A"} ]'
    assert decode_source_offset_key(other_order) == expected
    assert decode_source_offset_key(other_order) == ("MirrorSourceConnector", "A", "orders", 0)


@pytest.mark.parametrize(
    "data",
    [
        heartbeat_offset_key("B", "A"),
        checkpoint_offset_key("g1", "A.orders", 0),
        b'["MirrorSourceConnector",{"cluster":"A","partition":"0","topic":"t"}]',
        b'["MirrorSourceConnector",{"cluster":"A","partition":true,"topic":"t"}]',
        b'["MirrorSourceConnector",{"cluster":"A","partition":1.0,"topic":"t"}]',
        b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t","x":1}]',
        b'["MirrorSourceConnector",{"cluster":null,"partition":0,"topic":"t"}]',
        b'["MirrorSourceConnector"]',
        b'{"cluster":"A","partition":0,"topic":"t"}',
        b"not json",
        b"\xff\xfe",
        b"",
        b"null",
    ],
)
def test_decode_source_offset_key_rejects_other_keys(data: bytes) -> None:
    """Anything that is not a MirrorSourceConnector partition decodes to None."""
    assert decode_source_offset_key(data) is None


def test_decode_source_offset_values() -> None:
    """Offsets decode to ints; tombstones, JSON null and a missing offset give None."""
    assert decode_source_offset(b'{"offset":1234}') == 1234
    assert decode_source_offset(b'{ "offset" : -1 }') == -1
    assert decode_source_offset(encode_source_offset(2**63 - 1)) == 2**63 - 1
    assert decode_source_offset(None) is None
    assert decode_source_offset(b"null") is None
    assert decode_source_offset(b"{}") is None
    assert decode_source_offset(b'{"offset":null}') is None


@pytest.mark.parametrize(
    "data", [b"garbage", b"[1]", b'{"offset":"5"}', b'{"offset":1.5}', b'{"offset":true}']
)
def test_decode_source_offset_rejects_malformed_values(data: bytes) -> None:
    """A value that is not `{"offset": <integer>}` raises RecordFormatError."""
    with pytest.raises(RecordFormatError):
        decode_source_offset(data)


@given(TEXT, TEXT, st.integers(0, 2**31 - 1), INT64)
def test_source_offset_round_trip(cluster: str, topic: str, partition: int, offset: int) -> None:
    """Keys and values decode back to what was encoded, and are valid JSON of the expected shape."""
    key = source_offset_key(cluster, topic, partition)
    assert decode_source_offset_key(key) == SourceOffsetKey(
        "MirrorSourceConnector", cluster, topic, partition
    )
    assert json.loads(key) == [
        "MirrorSourceConnector",
        {"cluster": cluster, "partition": partition, "topic": topic},
    ]
    assert decode_source_offset(encode_source_offset(offset)) == offset


# --- murmur2 and the default partitioner ----------------------------------------------------------------

# From Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2).
UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]
# Computed with Java: org.apache.kafka.common.utils.Utils.murmur2 from kafka-clients 4.3.1.
JAVA_VECTORS = [
    (b"", 275646681),
    (b"a", -1563381124),
    (b"ab", 316155434),
    (b"abcd", -1323649548),
    (b"abcde", 461995741),
    (h("ff fe 80 00"), -2030859805),
    (b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"orders"}]', -225638395),
]


@pytest.mark.parametrize(("data", "expected"), UTILS_TEST_VECTORS + JAVA_VECTORS)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    """murmur2 gives Kafka's signed 32-bit values."""
    assert murmur2(data) == expected


@given(st.binary(max_size=64))
def test_murmur2_is_a_signed_int32(data: bytes) -> None:
    """The result always fits a Java int."""
    assert -(2**31) <= murmur2(data) < 2**31


def test_java_default_partition() -> None:
    """The partition is toPositive(murmur2(key)) % n, as in Java's BuiltInPartitioner."""
    key = b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"orders"}]'
    assert java_default_partition(key, 25) == (-225638395 & 0x7FFFFFFF) % 25 == 3
    assert java_default_partition(b"21", 1) == 0
    assert java_default_partition(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    with pytest.raises(ValueError, match="positive"):
        java_default_partition(b"x", 0)
