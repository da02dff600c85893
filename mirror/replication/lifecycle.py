"""Source topics deleted, or deleted and created again, as a flow's topic refreshes see them.

A topic listed by one refresh and missing from the next was deleted; a topic listed again under a new
topic id was re-created (docs/guarantees.md, "Topics deleted and re-created"). `TopicLifecycle` keeps
what the flow knows of each replicated source topic and decides, from one listing, what changed:

- **deleted**: logged, counted (``mirror_source_topics_deleted_total``), shown in /status; its remote topic
  is kept, unless ``remote.topics.delete.enabled`` asks to delete it ``remote.topics.delete.delay.seconds``
  after the source topic went away (and it did not come back meanwhile);
- **re-created** (a new topic id): logged, counted (``mirror_source_topics_recreated_total``), shown in
  /status; the flow copies the new topic from its start with nothing of the old topic's progress.

Re-creation is also found when stored progress names an earlier topic id than the topic has now
(`mirror.replication.positions`): the worker may not have run while it happened. Each re-creation is
reported once, whoever finds it first. No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import structlog

from mirror import metrics

__all__ = ["TopicChange", "TopicChanges", "TopicLifecycle"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopicChange:
    """What became of one source topic (for /status)."""

    change: str  # "deleted" or "re-created"
    at: float  # when the flow saw it (seconds since the epoch)
    topic_id: str | None  # the topic's id now ("re-created"), or the last one known ("deleted")
    remote_delete_at: float | None = None  # when its remote topic is due to be deleted (opt-in)


@dataclass
class TopicChanges:
    """What one listing changed."""

    deleted: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)  # copy these again from their start
    remote_deletions_due: list[str] = field(default_factory=list)  # source topics: delete their remote topic


class TopicLifecycle:
    """What a flow knows of its replicated source topics: their ids, and the deleted ones."""

    def __init__(
        self, flow: str, source: str, target: str, delete_remote: bool = False, delay: float = 0.0
    ) -> None:
        self.flow, self._labels = flow, (source, target)
        self.delete_remote, self.delay = delete_remote, delay
        self.ids: dict[str, str | None] = {}  # listed topic -> its id (None: the broker gives none)
        self.changes: dict[str, TopicChange] = {}  # source topic -> its last change, for /status
        self._last_ids: dict[str, str] = {}  # every topic's last known id, deleted ones included
        self._deleted_at: dict[str, float] = {}  # deleted topics not listed again, and since when
        self._listed = False
        self._log = log.bind(flow=flow)

    def observe(
        self, listed: Mapping[str, str | None], now: float, existing: Collection[str] | None = None
    ) -> TopicChanges:
        """One listing of the replicated source topics (topic -> id) at ``now``: what changed.
        ``existing``: every topic of the source (a topic still there is not deleted, only no longer
        replicated)."""
        out = TopicChanges()
        if self._listed:
            gone = set(self.ids) - set(listed)
            for topic in sorted(gone - set(existing or ())):
                self._deleted_at[topic] = now
                due = now + self.delay if self.delete_remote else None
                self.changes[topic] = TopicChange("deleted", now, self._last_ids.get(topic), due)
                metrics.source_topics_deleted_total.labels(*self._labels).inc()
                self._log.warning(
                    "source topic deleted; its remote topic is kept"
                    if due is None
                    else "source topic deleted; its remote topic will be deleted",
                    topic=topic,
                    topic_id=self._last_ids.get(topic),
                    **({} if due is None else {"delay_s": self.delay}),
                )
                out.deleted.append(topic)
        for topic, topic_id in sorted(listed.items()):
            was_deleted = self._deleted_at.pop(topic, None) is not None
            if topic_id is not None and self.recreated(topic, self._last_ids.get(topic), topic_id, now):
                out.recreated.append(topic)
            elif was_deleted:
                # listed again under the same id (a listing missed it), or with no id to tell
                self.changes.pop(topic, None)
                self._log.info("source topic listed again", topic=topic, topic_id=topic_id)
            if topic_id is not None:
                self._last_ids[topic] = topic_id
        for topic, since in sorted(self._deleted_at.items()):
            if self.delete_remote and now >= since + self.delay:
                out.remote_deletions_due.append(topic)
        self.ids = dict(listed)
        self._listed = True
        return out

    def recreated(self, topic: str, earlier_id: str | None, topic_id: str, now: float) -> bool:
        """Whether ``topic``, now ``topic_id``, was re-created since ``earlier_id`` (None: not known);
        reported once per new id, whoever finds it (a listing, or stored progress)."""
        if earlier_id is None or earlier_id == topic_id:
            return False
        seen = self.changes.get(topic)
        if seen is not None and seen.change == "re-created" and seen.topic_id == topic_id:
            return False
        self.changes[topic] = TopicChange("re-created", now, topic_id)
        self._last_ids[topic] = topic_id
        metrics.source_topics_recreated_total.labels(*self._labels).inc()
        self._log.warning(
            "source topic re-created; copying the new topic from its start",
            topic=topic,
            previous_topic_id=earlier_id,
            topic_id=topic_id,
        )
        return True

    def remote_deleted(self, topic: str, remote: str) -> None:
        """The remote topic of deleted source topic ``topic`` was deleted (opt-in)."""
        self._deleted_at.pop(topic, None)
        change = self.changes.get(topic)
        if change is not None:
            self.changes[topic] = TopicChange("remote deleted", change.at, change.topic_id)
        metrics.remote_topics_deleted_total.labels(*self._labels).inc()
        self._log.warning("deleted the remote topic of a deleted source topic", topic=topic, remote=remote)
