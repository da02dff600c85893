"""Unreadable records of the internal topics mirror reads: each reported once, counted, passed over.

Progress (``mm2-offsets.*``), offset syncs, checkpoints and heartbeats may hold a record `mirror` cannot
decode — written by a buggy tool, an older version or by mistake. Such a record never stops a flow and
never makes a loop crash and restart: its reader makes it a `MalformedRecord` (topic, partition, offset,
what is wrong) and hands it to `report`, which logs it once per process however often the topic is read
again, counts it in ``mirror_internal_records_malformed_total{cluster, topic}``, and the reader goes on
with the safest fallback for its kind (docs/guarantees.md, "Unreadable records in internal topics").
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from mirror import metrics
from mirror.errors import MalformedRecord

__all__ = ["MalformedRecord", "report"]

log = structlog.get_logger(__name__)

#: How many reported records are remembered (so a re-read reports nothing twice); older ones may be
#: reported again after that many others.
_REMEMBERED = 10_000
_reported: OrderedDict[tuple[str, str, int, int], None] = OrderedDict()


def report(cluster: str, error: MalformedRecord, fallback: str) -> bool:
    """Report an unreadable record of ``cluster`` once (log, metric); ``fallback`` says what is done
    instead. Returns whether it was reported now (False: reported before)."""
    key = (cluster, error.topic, error.partition, error.offset)
    if key in _reported:
        return False
    _reported[key] = None
    if len(_reported) > _REMEMBERED:
        _reported.popitem(last=False)
    metrics.internal_records_malformed_total.labels(cluster, error.topic).inc()
    log.error(
        "unreadable record in an internal topic; passed over",
        cluster=cluster,
        topic=error.topic,
        partition=error.partition,
        offset=error.offset,
        reason=error.reason,
        fallback=fallback,
    )
    return True
