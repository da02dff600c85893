"""What a source task shows of itself in /status (`mirror.service.http`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mirror.types import TP

__all__ = ["Halt", "TaskState", "TaskStatus"]

TaskState = Literal["starting", "running", "retrying", "stopped"]


@dataclass(frozen=True, slots=True)
class Halt:
    """A partition stopped at ``offset``, the first record the target refused (``reason``)."""

    offset: int
    reason: str


@dataclass
class TaskStatus:
    state: TaskState = "starting"
    last_error: str | None = None
    restarts: int = 0
    records: int = 0
    partitions: int = 0
    halted: dict[TP, Halt] = field(default_factory=dict)
    dead_lettered: int = 0  # records written to the dead-letter topic instead of the remote topic
    stuck: str | None = None  # why the task counts as stuck (`mirror.replication.stuck`), until it moves
