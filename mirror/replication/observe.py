"""What a source task reports per partition: records and bytes copied, lag, record age, latency, the
halted and paused gauges, the heartbeat timestamps it copies (``mirror_*`` series; docs/configuration.md)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mirror import metrics
from mirror.config import FlowSettings
from mirror.kafka import Reader, SourceBatch
from mirror.mm2.policy import ReplicationPolicy
from mirror.mm2.records import Heartbeat, RecordFormatError
from mirror.replication import malformed
from mirror.replication.malformed import MalformedRecord
from mirror.types import TP

if TYPE_CHECKING:
    from mirror.replication.inflight import InFlight

__all__ = ["TaskMetrics"]


class TaskMetrics:
    """The metric series of one task. ``next_offset(tp)``: the next source offset the task will copy of
    ``tp`` (lag is the high watermark minus it)."""

    def __init__(
        self, flow: FlowSettings, policy: ReplicationPolicy, next_offset: Callable[[TP], int]
    ) -> None:
        self.labels = (flow.source, flow.target)
        self._source = flow.source
        self._policy = policy
        self._next_offset = next_offset
        self._remote: dict[str, str] = {}
        self._batches = metrics.batches_total.labels(*self.labels)
        self._children: dict[TP, tuple[Any, Any]] = {}  # records and bytes counters per partition
        self._hw: dict[TP, int] = {}
        self._acked_ts: dict[TP, int] = {}  # timestamp (ms) of the last acked record

    def remote_topic(self, topic: str) -> str:
        remote = self._remote.get(topic)
        if remote is None:
            remote = self._remote[topic] = self._policy.format_remote_topic(self._source, topic)
        return remote

    @property
    def partitions(self) -> list[TP]:
        """The partitions this task has series of."""
        return list(self._children)

    def fetched(self, reader: Reader, batches: Iterable[SourceBatch]) -> None:
        for b in batches:
            hw = reader.highwater(b.topic, b.partition)
            if hw is not None:
                self._hw[(b.topic, b.partition)] = hw

    def record_age(self, entries: Sequence[InFlight]) -> None:
        if not entries:
            return
        newest = max(e.newest_timestamp for e in entries)
        metrics.record_age.labels(*self.labels).observe(max(0.0, time.time() - newest / 1000))

    def completed(self, entry: InFlight, count: int) -> None:
        """``count`` records of ``entry`` are copied (acknowledged, or committed)."""
        src, tgt = self.labels
        last = entry.futures[-1][1]  # the last target batch's chunk
        self._acked_ts[entry.tp] = last.newest_timestamp
        child = self._children.get(entry.tp)
        if child is None:
            labels = (src, tgt, entry.remote_topic, str(entry.tp[1]))
            child = self._children[entry.tp] = (
                metrics.records_total.labels(*labels),
                metrics.bytes_total.labels(*labels),
            )
        child[0].inc(count)
        child[1].inc(entry.value_bytes)
        self._batches.inc(len(entry.futures))
        metrics.replication_latency.labels(src, tgt).observe(
            max(0.0, time.time() - entry.newest_timestamp / 1000)
        )
        self.set_lag(entry.tp, entry.remote_topic)
        if self._policy.is_heartbeats_topic(entry.tp[0]):
            self._observe_heartbeat(entry.tp, last.records[-1])  # decoded for heartbeats only

    # --- lag ---------------------------------------------------------------------------------------

    def lag_of(self, tp: TP) -> int | None:
        hw = self._hw.get(tp)
        if hw is None:
            return None
        return max(0, hw - self._next_offset(tp))

    def lag(self, partitions: Iterable[TP]) -> dict[TP, int]:
        lags = {tp: self.lag_of(tp) for tp in partitions}
        return {tp: lag for tp, lag in lags.items() if lag is not None}

    def set_lag(self, tp: TP, remote_topic: str) -> None:
        lag = self.lag_of(tp)
        if lag is None:
            return
        labels = (*self.labels, remote_topic, str(tp[1]))
        metrics.lag_records.labels(*labels).set(lag)
        ts = self._acked_ts.get(tp)
        seconds = max(0.0, time.time() - ts / 1000) if lag and ts is not None else 0.0
        metrics.lag_seconds.labels(*labels).set(seconds)

    def update_lag(self, partitions: Collection[TP]) -> None:
        for tp in self._hw:
            if tp in partitions:
                self.set_lag(tp, self.remote_topic(tp[0]))

    # --- other series ------------------------------------------------------------------------------

    def halted(self, tp: TP) -> None:
        metrics.partition_halted.labels(*self.labels, self.remote_topic(tp[0]), str(tp[1])).set(1)

    def resumed(self, tp: TP) -> None:
        """The halted partition is copied again (the gauge stays, at 0, while the partition is ours)."""
        metrics.partition_halted.labels(*self.labels, self.remote_topic(tp[0]), str(tp[1])).set(0)

    def dead_lettered(self, tp: TP, count: int) -> None:
        metrics.dead_lettered_records_total.labels(*self.labels, self.remote_topic(tp[0]), str(tp[1])).inc(
            count
        )

    def unhalted(self, tp: TP) -> None:
        with contextlib.suppress(KeyError):
            metrics.partition_halted.remove(*self.labels, self.remote_topic(tp[0]), str(tp[1]))

    def paused(self, tp: TP, paused: bool) -> None:
        labels = (*self.labels, self.remote_topic(tp[0]), str(tp[1]))
        if paused:
            metrics.partition_paused.labels(*labels).set(1)
        else:
            with contextlib.suppress(KeyError):
                metrics.partition_paused.remove(*labels)

    def highwater(self, tp: TP, hw: int) -> None:
        """The source's high watermark of ``tp`` as read outside a fetch (a paused partition)."""
        self._hw[tp] = hw
        self.set_lag(tp, self.remote_topic(tp[0]))

    def remove(self, partitions: Iterable[TP]) -> None:
        """Drop the per-partition series of partitions this task no longer copies (moved away)."""
        for tp in partitions:
            labels = (*self.labels, self.remote_topic(tp[0]), str(tp[1]))
            for metric in (
                metrics.lag_records,
                metrics.lag_seconds,
                metrics.records_total,
                metrics.bytes_total,
                metrics.partition_paused,
                metrics.partition_halted,
                metrics.dead_lettered_records_total,
            ):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)
            self._children.pop(tp, None)

    def _observe_heartbeat(self, tp: TP, record: Any) -> None:
        """The newest heartbeat of a copied batch of a heartbeats topic gives its upstream's timestamp; an
        unreadable one is copied all the same, reported once, and gives none."""
        if record.key is None or record.value is None:
            return
        try:
            beat = Heartbeat.decode(record.key, record.value)
        except RecordFormatError as exc:
            error = MalformedRecord(tp[0], tp[1], record.offset, str(exc))
            malformed.report(self._source, error, "copied as it is; no heartbeat timestamp taken from it")
            return
        upstream = beat.source_cluster_alias
        metrics.heartbeat_timestamp.labels(*self.labels, upstream).set(beat.timestamp / 1000)
