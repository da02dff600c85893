"""The exceptions of `mirror`. Kafka client errors are translated into these in `mirror.kafka` only."""

from __future__ import annotations


class MirrorError(Exception):
    """Base of every error `mirror` raises on purpose."""

    #: A retriable error is logged, counted and retried with backoff; it never stops the service.
    retriable: bool = False
    #: A short machine-readable kind, used as the ``kind`` label of ``mirror_errors_total``.
    kind: str = "internal"


class KafkaUnavailable(MirrorError):
    """A cluster cannot be reached, or a request to it timed out."""

    retriable = True
    kind = "unavailable"


class KafkaRequestFailed(MirrorError):
    """A broker answered a request with an error (per topic or per request)."""

    def __init__(
        self, message: str, *, code: int = -1, retriable: bool = True, kind: str = "request"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable
        self.kind = kind


class AuthorizationFailed(KafkaRequestFailed):
    """The principal is not allowed to do this. Retried (ACLs may be fixed), reported in health."""

    def __init__(self, message: str, *, code: int = -1) -> None:
        super().__init__(message, code=code, retriable=True, kind="authorization")


class AuthenticationFailed(MirrorError):
    """A cluster refused our credentials (SASL). Retried with backoff (a rotated secret may come back);
    the message names the cluster, the mechanism and the user, never the password."""

    retriable = True
    kind = "authentication"


class TlsFailed(MirrorError):
    """TLS to a cluster failed: untrusted or mismatched certificate, client certificate refused, or TLS
    material (stores, PEM files) that cannot be loaded. The message names the cluster."""

    retriable = True
    kind = "tls"


class ProducerFenced(MirrorError):
    """Exactly-once mode: a newer producer with this task's transactional id exists, or the transaction
    coordinator aborted our transaction because it outlived ``transaction.timeout.ms``. Either way this
    producer can write no more; the task re-initialises (which fences the other instance, if any) unless
    the group moved the task away meanwhile."""

    kind = "fenced"


class MergedBatchRefused(MirrorError):
    """The target refused a batch the producer had merged of several (`mirror.kafka.send_queue`): the
    refused record may be in any of them. The source task sends that range again unmerged, so the next
    refusal names its records exactly."""

    kind = "merged_batch_refused"


class RecordRejected(MirrorError):
    """The target refused a batch of records for good (a timestamp outside the remote topic's
    ``message.timestamp.*.max.ms``, a record over its ``max.message.bytes``, a policy violation...).

    Sending it again cannot succeed, and skipping it would lose data: the partition halts at the first
    refused record (``offset``), named with the reason, while the other partitions go on. ``topic``,
    ``partition``, ``offset`` and ``count`` (records in the refused batch) are set once the source task
    knows which records the batch held."""

    kind = "record_rejected"

    def __init__(
        self,
        reason: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        count: int = 0,
        last_offset: int | None = None,
        too_large: bool = False,
    ) -> None:
        where = f"{topic}-{partition} at offset {offset}: " if topic is not None else ""
        super().__init__(f"{where}the target refused the record(s): {reason}")
        self.reason = reason
        self.topic, self.partition, self.offset, self.count = topic, partition, offset, count
        self.last_offset = last_offset
        #: refused for the batch's size (smaller batches of the same records may pass)
        self.too_large = too_large


class SourceOutOfRange(MirrorError):
    """The source no longer holds the position a task reads from: records were deleted ahead of it
    (retention, DeleteRecords) or the partition's log end moved below it. ``positions`` maps each such
    (topic, partition) to the offset that could not be read. The task reports what was lost, then reads
    on from the log start (or end)."""

    retriable = True
    kind = "source_out_of_range"

    def __init__(self, positions: dict[tuple[str, int], int]) -> None:
        names = ", ".join(f"{t}-{p}@{o}" for (t, p), o in sorted(positions.items()))
        super().__init__(f"source offsets out of range: {names}")
        self.positions = positions


class MalformedRecord(MirrorError):
    """A record of an internal topic that `mirror` reads (progress, offset syncs, checkpoints, heartbeats)
    and cannot decode: written by a buggy tool, an older version or by mistake. Never retried: the record
    is reported once, counted and passed over (`mirror.replication.malformed`, docs/guarantees.md)."""

    retriable = False
    kind = "malformed_record"

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(f"unreadable record in {topic}-{partition} at offset {offset}: {reason}")
        self.topic, self.partition, self.offset, self.reason = topic, partition, offset, reason


class SourceTopicsRecreated(MirrorError):
    """Source topics a task copies were deleted and created again: its session ends, and the next one
    reads them from their start (`mirror.replication.lifecycle`). Not a failure: no backoff, no count."""

    retriable = True
    kind = "source_topic_recreated"

    def __init__(self, topics: set[str]) -> None:
        super().__init__(f"source topics re-created: {', '.join(sorted(topics))}")
        self.topics = topics


class TaskStuck(MirrorError):
    """A task made no progress in partitions that have records to copy for longer than
    ``task.stuck.timeout.seconds``: its session is restarted (with backoff) and /readyz names it until
    those partitions move again."""

    retriable = True
    kind = "stuck"
