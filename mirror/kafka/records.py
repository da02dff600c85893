"""The records and acknowledgements that cross the boundary of `mirror.kafka` (no aiokafka types); the
fetched batches are `mirror.kafka.batches.SourceBatch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class RecordData(Protocol):
    """What the data path copies of a record (`batches.rebuild`, `BatchProducer.send`)."""

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class SourceRecord(RecordData, Protocol):
    """One fetched record, as the data path reads it (aiokafka's C ``DefaultRecord`` has this shape)."""

    @property
    def offset(self) -> int: ...


@dataclass(slots=True)
class Ack:
    """The target's answer for one produced batch."""

    base_offset: int
    count: int
