"""Wire formats shared with Java MirrorMaker 2 (docs/mm2-compat.md §1).

- `Heartbeat`, `Checkpoint`, `OffsetSync`: Kafka's old protocol `Struct` encoding (big-endian INT16/32/64,
  STRING = INT16 length + UTF-8), byte-identical to Java. Decoders ignore trailing bytes like Java does.
- The Connect offset-store JSON of the three connectors (§1.5), with Java's key field order.
- `murmur2` and the default producer partitioner, to pick the `mm2-offsets.*` partition as Java does.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Final, NamedTuple, Self

__all__ = [
    "CHECKPOINT_CONNECTOR",
    "HEARTBEAT_CONNECTOR",
    "MAX_STRING_BYTES",
    "SOURCE_CONNECTOR",
    "VERSION",
    "Checkpoint",
    "Heartbeat",
    "OffsetSync",
    "RecordFormatError",
    "SourceOffsetKey",
    "checkpoint_offset_key",
    "decode_source_offset",
    "decode_source_offset_key",
    "decode_source_offset_value",
    "encode_source_offset",
    "heartbeat_offset_key",
    "java_default_partition",
    "murmur2",
    "offset_key_problem",
    "source_offset_key",
]

VERSION: Final = 0
"""The only Heartbeat/Checkpoint value version; Java 4.4 rejects others (KAFKA-20659)."""
MAX_STRING_BYTES: Final = 32767
SOURCE_CONNECTOR: Final = "MirrorSourceConnector"
HEARTBEAT_CONNECTOR: Final = "MirrorHeartbeatConnector"
CHECKPOINT_CONNECTOR: Final = "MirrorCheckpointConnector"

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_HEARTBEAT_VALUE = struct.Struct(">hq")  # version, timestamp
_CHECKPOINT_VALUE = struct.Struct(">hqq")  # version, upstreamOffset, offset (+ metadata STRING)
_OFFSET_SYNC_VALUE = struct.Struct(">qq")  # upstreamOffset, offset
_UINT32_LE = struct.Struct("<I")


class RecordFormatError(ValueError):
    """A record that cannot be encoded or decoded in the Java MM2 wire format."""


# --------------------------------------------------------------------------------------------------------
# Struct primitives
# --------------------------------------------------------------------------------------------------------


def _string(value: str, field: str) -> bytes:
    data = value.encode("utf-8")
    n = len(data)
    if n > MAX_STRING_BYTES:
        raise RecordFormatError(f"{field} is {n} bytes of UTF-8; a STRING holds at most {MAX_STRING_BYTES}")
    return _INT16.pack(n) + data


def _read_string(buf: bytes, pos: int, field: str, record: str) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise RecordFormatError(f"{record}: truncated, {len(buf)} bytes end before the length of {field}")
    (n,) = _INT16.unpack_from(buf, pos)
    if n < 0:
        raise RecordFormatError(f"{record}: length {n} of {field} is negative")
    end = pos + 2 + n
    if end > len(buf):
        raise RecordFormatError(
            f"{record}: truncated, {field} needs {n} bytes, only {len(buf) - pos - 2} left"
        )
    # Java decodes with replacement of malformed input, never failing.
    return bytes(buf[pos + 2 : end]).decode("utf-8", "replace"), end


def _read_int32(buf: bytes, pos: int, field: str, record: str) -> int:
    if pos + 4 > len(buf):
        raise RecordFormatError(f"{record}: truncated, {len(buf)} bytes end before {field}")
    value: int = _INT32.unpack_from(buf, pos)[0]
    return value


def _check_version(version: int, record: str) -> None:
    if version != VERSION:
        raise RecordFormatError(f"{record}: unsupported value version {version} (only {VERSION} is known)")


def _pack_error(record: str, exc: struct.error) -> RecordFormatError:
    return RecordFormatError(f"{record}: a number is out of range for its INT16/INT32/INT64 field ({exc})")


# --------------------------------------------------------------------------------------------------------
# Internal records
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A record of the `heartbeats` topic: key (source, target), value (version 0, timestamp ms)."""

    source_cluster_alias: str
    target_cluster_alias: str
    timestamp: int

    def encode_key(self) -> bytes:
        return _string(self.source_cluster_alias, "sourceClusterAlias") + _string(
            self.target_cluster_alias, "targetClusterAlias"
        )

    def encode_value(self) -> bytes:
        try:
            return _HEARTBEAT_VALUE.pack(VERSION, self.timestamp)
        except struct.error as exc:
            raise _pack_error("Heartbeat", exc) from exc

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> Self:
        source, pos = _read_string(key, 0, "sourceClusterAlias", "Heartbeat key")
        target, _ = _read_string(key, pos, "targetClusterAlias", "Heartbeat key")
        if len(value) < 2:
            raise RecordFormatError(f"Heartbeat value: truncated, {len(value)} bytes end before the version")
        (version,) = _INT16.unpack_from(value, 0)
        _check_version(version, "Heartbeat value")
        if len(value) < _HEARTBEAT_VALUE.size:
            raise RecordFormatError(
                f"Heartbeat value: truncated, {len(value)} bytes end before the timestamp"
            )
        _, timestamp = _HEARTBEAT_VALUE.unpack_from(value, 0)
        return cls(source, target, timestamp)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A record of `<source>.checkpoints.internal`; `topic` is the downstream (renamed) topic."""

    group: str
    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int
    metadata: str = ""

    @property
    def topic_partition(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def encode_key(self) -> bytes:
        try:
            partition = _INT32.pack(self.partition)
        except struct.error as exc:
            raise _pack_error("Checkpoint key", exc) from exc
        return _string(self.group, "group") + _string(self.topic, "topic") + partition

    def encode_value(self) -> bytes:
        try:
            head = _CHECKPOINT_VALUE.pack(VERSION, self.upstream_offset, self.downstream_offset)
        except struct.error as exc:
            raise _pack_error("Checkpoint value", exc) from exc
        return head + _string(self.metadata, "metadata")

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> Self:
        group, pos = _read_string(key, 0, "group", "Checkpoint key")
        topic, pos = _read_string(key, pos, "topic", "Checkpoint key")
        partition = _read_int32(key, pos, "partition", "Checkpoint key")
        if len(value) < 2:
            raise RecordFormatError(f"Checkpoint value: truncated, {len(value)} bytes end before the version")
        (version,) = _INT16.unpack_from(value, 0)
        _check_version(version, "Checkpoint value")
        if len(value) < _CHECKPOINT_VALUE.size:
            raise RecordFormatError(f"Checkpoint value: truncated, {len(value)} bytes end before the offsets")
        _, upstream, downstream = _CHECKPOINT_VALUE.unpack_from(value, 0)
        metadata, _ = _read_string(value, _CHECKPOINT_VALUE.size, "metadata", "Checkpoint value")
        return cls(group, topic, partition, upstream, downstream, metadata)


@dataclass(frozen=True, slots=True)
class OffsetSync:
    """A record of `mm2-offset-syncs.<alias>.internal`; `topic` is the upstream (source) topic. No version."""

    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int

    @property
    def topic_partition(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def encode_key(self) -> bytes:
        try:
            partition = _INT32.pack(self.partition)
        except struct.error as exc:
            raise _pack_error("OffsetSync key", exc) from exc
        return _string(self.topic, "topic") + partition

    def encode_value(self) -> bytes:
        try:
            return _OFFSET_SYNC_VALUE.pack(self.upstream_offset, self.downstream_offset)
        except struct.error as exc:
            raise _pack_error("OffsetSync value", exc) from exc

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> Self:
        topic, pos = _read_string(key, 0, "topic", "OffsetSync key")
        partition = _read_int32(key, pos, "partition", "OffsetSync key")
        if len(value) < _OFFSET_SYNC_VALUE.size:
            raise RecordFormatError(f"OffsetSync value: truncated, {len(value)} bytes, 16 needed")
        upstream, downstream = _OFFSET_SYNC_VALUE.unpack_from(value, 0)
        return cls(topic, partition, upstream, downstream)


# --------------------------------------------------------------------------------------------------------
# Connect offset store JSON (JsonConverter, schemas.enable=false)
# --------------------------------------------------------------------------------------------------------

_JSON_ESCAPE = re.compile(r'[\x00-\x1f"\\\U00010000-\U0010ffff]')
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _json_escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    cp = ord(c)
    if cp > 0xFFFF:  # Jackson's UTF-8 generator escapes both halves of a surrogate pair
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    return _JSON_SHORT.get(c) or f"\\u{cp:04X}"  # upper-case hex, as Jackson writes it


def _js(value: str) -> str:
    """A JSON string literal exactly as Connect's Jackson writes it.

    Escaped: `"`, `\\`, the controls below U+0020 (short forms where JSON has them) and characters outside
    the BMP (as a `\\uD83D\\uDE00` pair); everything else, including other non-ASCII, is raw UTF-8.
    """
    return '"' + _JSON_ESCAPE.sub(_json_escape_char, value) + '"'


def _int(value: int, field: str) -> str:
    if type(value) is not int:  # bool is an int subclass, and JSON would write `true`
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    return str(value)


class SourceOffsetKey(NamedTuple):
    """A decoded `MirrorSourceConnector` offset key: the connector name and the source partition."""

    connector: str
    cluster: str
    topic: str
    partition: int


def source_offset_key(cluster: str, topic: str, partition: int, connector: str = SOURCE_CONNECTOR) -> bytes:
    """`["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"orders"}]` (Java's HashMap order)."""
    return (
        f'[{_js(connector)},{{"cluster":{_js(cluster)},"partition":{_int(partition, "partition")},'
        f'"topic":{_js(topic)}}}]'
    ).encode()


def heartbeat_offset_key(
    source_cluster_alias: str, target_cluster_alias: str, connector: str = HEARTBEAT_CONNECTOR
) -> bytes:
    """`["MirrorHeartbeatConnector",{"sourceClusterAlias":"B","targetClusterAlias":"A"}]`."""
    return (
        f'[{_js(connector)},{{"sourceClusterAlias":{_js(source_cluster_alias)},'
        f'"targetClusterAlias":{_js(target_cluster_alias)}}}]'
    ).encode()


def checkpoint_offset_key(
    group: str, topic: str, partition: int, connector: str = CHECKPOINT_CONNECTOR
) -> bytes:
    """`["MirrorCheckpointConnector",{"partition":0,"topic":"A.orders","group":"g1"}]` (renamed topic)."""
    return (
        f'[{_js(connector)},{{"partition":{_int(partition, "partition")},"topic":{_js(topic)},'
        f'"group":{_js(group)}}}]'
    ).encode()


def encode_source_offset(offset: int, topic_id: str | None = None) -> bytes:
    """`{"offset":1234}`; the heartbeat and checkpoint connectors always store `{"offset":0}`. With
    ``topic_id``, `{"offset":1234,"topicId":"..."}`: Java reads only `offset` (§1.5)."""
    if topic_id is None:
        return b'{"offset":' + _int(offset, "offset").encode() + b"}"
    return b'{"offset":' + _int(offset, "offset").encode() + b',"topicId":' + _js(topic_id).encode() + b"}"


def decode_source_offset_key(data: bytes) -> SourceOffsetKey | None:
    """Parse an offset key of any field order; None unless it is `[name, {cluster, topic, partition}]`."""
    try:
        obj = json.loads(data)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], dict)):
        return None
    part = obj[1]
    if part.keys() != {"cluster", "topic", "partition"}:
        return None
    cluster, topic, partition = part["cluster"], part["topic"], part["partition"]
    if not (isinstance(cluster, str) and isinstance(topic, str) and type(partition) is int):
        return None
    return SourceOffsetKey(obj[0], cluster, topic, partition)


def offset_key_problem(data: bytes) -> str | None:
    """What is wrong with an offset key `decode_source_offset_key` refused; None when it is the well-formed
    key of another connector (the heartbeat and checkpoint connectors share the topic)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return f"key is not JSON: {data[:100]!r}"
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], dict)):
        return f"key is not a [connector, {{partition}}] pair: {data[:100]!r}"
    if obj[0] == SOURCE_CONNECTOR:
        return f"{SOURCE_CONNECTOR} key without string cluster, topic and int partition: {data[:100]!r}"
    return None


def decode_source_offset_value(data: bytes | None) -> tuple[int | None, str | None]:
    """(`offset`, `topicId`) of a `{"offset": N, "topicId": "..."}` value, each None when absent; raises
    `RecordFormatError` when the value is not such an object."""
    offset = decode_source_offset(data)
    if data is None:
        return offset, None
    obj = json.loads(data)
    topic_id = obj.get("topicId") if isinstance(obj, dict) else None
    if topic_id is not None and not isinstance(topic_id, str):
        raise RecordFormatError(f"source offset topicId is not a string: {topic_id!r}")
    return offset, topic_id


def decode_source_offset(data: bytes | None) -> int | None:
    """The `offset` of a `{"offset": N}` value; None for a tombstone, JSON null or a missing offset."""
    if data is None:
        return None
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise RecordFormatError(f"source offset value is not JSON: {data[:100]!r}") from exc
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise RecordFormatError(f"source offset value is not a JSON object: {data[:100]!r}")
    offset = obj.get("offset")
    if offset is None:
        return None
    if type(offset) is not int:
        raise RecordFormatError(f"source offset is not an integer: {offset!r}")
    return offset


# --------------------------------------------------------------------------------------------------------
# Java default partitioner
# --------------------------------------------------------------------------------------------------------

_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK32
    tail = length & ~3
    for (word,) in _UINT32_LE.iter_unpack(data[:tail]):
        k = (word * _M) & _MASK32
        k ^= k >> 24
        h = ((h * _M) & _MASK32) ^ ((k * _M) & _MASK32)
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def java_default_partition(key: bytes, num_partitions: int) -> int:
    """The partition Java's default producer partitioner picks for a keyed record: toPositive(murmur2) % n."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, not {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
