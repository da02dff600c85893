"""A source task's session errors, as its TaskGroup raises them, reach the retry loop unwrapped."""

from __future__ import annotations

import asyncio

import pytest

from mirror.errors import KafkaUnavailable, ProducerFenced
from mirror.replication.task import _unwrapped


async def _session(*errors: BaseException) -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    async with asyncio.TaskGroup() as tg:
        for exc in errors:
            tg.create_task(fail(exc))


async def test_kafka_errors_of_a_task_group_come_out_unwrapped() -> None:
    """A loop's KafkaUnavailable inside the session's TaskGroup is raised as itself (so it is retried)."""
    with pytest.raises(KafkaUnavailable, match="down"):
        await _unwrapped(_session(KafkaUnavailable("down")))


async def test_fencing_wins_over_other_errors() -> None:
    """When one loop was fenced and another lost its connection, the task learns it was fenced."""
    with pytest.raises(ProducerFenced):
        await _unwrapped(_session(KafkaUnavailable("down"), ProducerFenced("fenced")))


async def test_bugs_are_not_hidden() -> None:
    """A group holding anything but Kafka/OS errors propagates unchanged (the task must not retry a bug)."""
    with pytest.raises(ExceptionGroup):
        await _unwrapped(_session(KafkaUnavailable("down"), ZeroDivisionError()))
