"""Operator controls of a flow (pause, resume, progress resets): their records and the state they add up to.

The records live in the flow's control topic (``mm2-control.<source>.internal`` on the target,
`mirror.replication.topology.control_topic`), compacted, one record per key, JSON:

- ``["pause","A->B","<regex>"]`` -> ``{"by": "...", "at": <epoch s>}``: the topics of the flow that fully
  match the Java regex are paused; ``{"paused": false, "by": ...}`` (or a tombstone) resumes them.
  Patterns add up: a topic is paused while any pattern matches it, and ``resume`` removes patterns, one
  or all.
- ``["throttle","A->B"]`` -> ``{"bytes_per_second": N, "by": ..., "at": ...}``: the flow's byte-rate limit
  from now on, in place of ``throttle.bytes.per.second`` (``null``: back to the configured one).
- ``["reset","A->B"]`` -> ``{"id": "...", "topics": "<regex>", "by": "...", "at": <epoch s>}``: the stored
  progress of those topics was rewritten (``mirror progress reset``): a task holding them re-reads it.

Every worker follows the topic (`mirror.replication.control_channel`); this module is the pure part: the
format and the state (`Controls`), which the flow's tasks consult before each fetch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.mm2.java_regex import java_regex

__all__ = ["Change", "Controls", "Pause", "Reset", "pause_key", "reset_key", "stamp", "throttle_key"]

ALL_TOPICS = ".*"


@dataclass(frozen=True)
class Pause:
    """One pause pattern: who set it, and when (seconds since the epoch)."""

    pattern: str
    by: str
    at: float


@dataclass(frozen=True)
class Reset:
    """A progress reset of the topics matching ``topics`` (``id``: tells one reset from the next)."""

    id: str
    topics: str
    by: str
    at: float


@dataclass(frozen=True)
class Change:
    """What one control record changed, for the audit log line every worker writes."""

    action: str  # "pause", "resume", "throttle" or "reset"
    topics: str
    by: str


def pause_key(flow: str, pattern: str) -> bytes:
    return json.dumps(["pause", flow, pattern], separators=(",", ":")).encode()


def throttle_key(flow: str) -> bytes:
    return json.dumps(["throttle", flow], separators=(",", ":")).encode()


def reset_key(flow: str) -> bytes:
    return json.dumps(["reset", flow], separators=(",", ":")).encode()


def stamp(by: str, at: float, **fields: str) -> bytes:
    """A control record's value: who, when, and what else the record says."""
    return json.dumps({**fields, "by": by, "at": at}, separators=(",", ":")).encode()


def _decode_key(key: bytes) -> list[str] | None:
    try:
        parsed = json.loads(key)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        return None
    return parsed


def _decode_value(value: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A pause pattern as a regex (Java syntax, as the flow's topic filters); ValueError when invalid."""
    return java_regex(pattern)


class Controls:
    """The control state of one flow, built from its control records in the order they were written.

    ``version`` grows with every change, so a task sees at a glance whether it must look again."""

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self.pauses: dict[str, Pause] = {}
        self.reset: Reset | None = None
        #: The flow's byte-rate limit set at run time (bytes/s; 0: none), overriding the configured one;
        #: None: the configured one applies.
        self.throttle: int | None = None
        self.version = 0
        self._compiled: dict[str, re.Pattern[str]] = {}
        self._cache: dict[str, bool] = {}

    def apply(self, key: bytes, value: bytes | None) -> Change | None:
        """Apply one control record; returns what changed (None: another flow's record, or no change)."""
        parts = _decode_key(key)
        if parts is None or len(parts) < 2 or parts[1] != self.flow:
            return None
        fields = _decode_value(value) if value is not None else {}
        by = str(fields.get("by", "?"))
        stamped = fields.get("at")
        at = float(stamped) if isinstance(stamped, (int, float)) else 0.0
        if parts[0] == "pause" and len(parts) == 3:
            paused = value is not None and fields.get("paused", True) is not False
            return self._pause(parts[2], Pause(parts[2], by, at) if paused else None, by)
        if parts[0] == "throttle" and len(parts) == 2:
            rate = fields.get("bytes_per_second")
            throttle = int(rate) if isinstance(rate, (int, float)) and rate >= 0 else None
            if throttle == self.throttle:
                return None
            self.throttle = throttle
            self.version += 1
            return Change("throttle", "configured" if throttle is None else f"{throttle} bytes/s", by)
        if parts[0] == "reset" and len(parts) == 2 and value is not None:
            topics = str(fields.get("topics", ALL_TOPICS))
            if self.reset is not None and self.reset.id == fields.get("id"):
                return None  # read again (a reconnect): already applied
            self.reset = Reset(str(fields.get("id", "")), topics, by, at)
            self.version += 1
            return Change("reset", topics, by)
        return None

    def _pause(self, pattern: str, pause: Pause | None, by: str) -> Change | None:
        if pause is None:
            if self.pauses.pop(pattern, None) is None:
                return None
            self._compiled.pop(pattern, None)
            change = Change("resume", pattern, by)
        else:
            try:
                self._compiled[pattern] = compile_pattern(pattern)
            except ValueError:
                return None  # written by hand, not by mirror: an invalid pattern pauses nothing
            known = pattern in self.pauses
            self.pauses[pattern] = pause
            if known:
                return None
            change = Change("pause", pattern, pause.by)
        self.version += 1
        self._cache.clear()
        return change

    def is_paused(self, topic: str) -> bool:
        """Whether the flow's source topic ``topic`` is paused (some pattern fully matches it)."""
        paused = self._cache.get(topic)
        if paused is None:
            paused = self._cache[topic] = any(p.fullmatch(topic) for p in self._compiled.values())
        return paused

    def paused_of(self, topics: Iterable[str]) -> set[str]:
        return {topic for topic in topics if self.is_paused(topic)}
