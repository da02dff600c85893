"""Writing checkpoint records to a flow's checkpoints topic (docs/mm2-compat.md §5), with their metrics:
``mirror_checkpoints_total``, ``mirror_checkpoint_latency_seconds``, the re-read bound per group and
partition (``mirror_checkpoint_reread_bound``) and when each group's checkpoints were last current
(``mirror_checkpoint_timestamp_seconds``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mirror import metrics
from mirror.kafka import Pending, Writer
from mirror.mm2.records import RecordFormatError

if TYPE_CHECKING:
    from mirror.jobs.checkpoint import CheckpointStore, Translated

__all__ = ["CheckpointRecords"]


class CheckpointRecords:
    """The checkpoints a job wrote to ``topic`` (``emitted``) and the re-read bound series it keeps."""

    def __init__(self, topic: str, labels: tuple[str, str], log: Any) -> None:
        self.topic = topic
        self.emitted = 0
        self._labels = labels
        self._log = log
        self._bound_labels: set[tuple[str, str, str]] = set()
        self._current: set[str] = set()

    async def write(self, writer: Writer, items: Sequence[Translated], store: CheckpointStore) -> int:
        """Write ``items``; those the target acknowledged go into ``store``. Returns how many; raises the
        first failure after accounting for the rest (what failed is retried next round)."""
        if not items:
            return 0
        now_ms = int(time.time() * 1000)
        futures: list[tuple[Translated, Pending]] = []
        for item in items:
            cp = item.checkpoint
            try:
                key, value = cp.encode_key(), cp.encode_value()
            except RecordFormatError as exc:  # e.g. commit metadata over 32767 bytes: skip this one only
                self._log.warning(
                    "checkpoint cannot be encoded", group=cp.group, topic=cp.topic, error=str(exc)
                )
                continue
            futures.append((item, await writer.send(self.topic, key, value, 0, now_ms)))
        acks = await asyncio.gather(*(future.ack() for _, future in futures), return_exceptions=True)
        failed = [ack for ack in acks if isinstance(ack, BaseException)]
        written = [
            item for (item, _), ack in zip(futures, acks, strict=True) if not isinstance(ack, BaseException)
        ]
        for item in written:  # only what the target acknowledged counts: the rest is retried next round
            cp = item.checkpoint
            store.update(cp)
            labels = (cp.group, cp.topic, str(cp.partition))
            self._bound_labels.add(labels)
            metrics.checkpoint_reread_bound.labels(*self._labels, *labels).set(item.reread_bound)
        metrics.checkpoints_total.labels(*self._labels).inc(len(written))
        metrics.checkpoint_latency.labels(*self._labels).observe(max(time.time() - now_ms / 1000, 0.0))
        self.emitted += len(written)
        if failed:
            raise failed[0]
        return len(written)

    def current(self, groups: Sequence[str]) -> None:
        """These groups' checkpoints match their committed offsets now (written, or still right)."""
        now = time.time()
        for group in groups:
            self._current.add(group)
            metrics.checkpoint_timestamp.labels(*self._labels, group).set(now)

    def forget(self, groups: set[str]) -> None:
        """Drop the re-read bound and timestamp series of groups no longer checkpointed."""
        for labels in [x for x in self._bound_labels if x[0] in groups]:
            self._bound_labels.discard(labels)
            with contextlib.suppress(KeyError):
                metrics.checkpoint_reread_bound.remove(*self._labels, *labels)
        for group in groups & self._current:
            self._current.discard(group)
            with contextlib.suppress(KeyError):
                metrics.checkpoint_timestamp.remove(*self._labels, group)
