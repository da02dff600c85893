"""Every aiokafka private API `mirror` relies on, in one place, checked when this module is imported.

aiokafka lacks a few things `mirror` needs (a raw protocol request, a metadata refresh on demand, the
group member id, the producer's sender);
they are reached through its private attributes, here only, behind typed functions. Those attributes
may change in any aiokafka release: importing this module fails with an `ImportError` naming the
installed and the expected version when the release series differs from the one this was written
against (pyproject.toml pins ``aiokafka==0.14.*``), and naming the attribute when one is missing.

Other modules of `mirror.kafka` use aiokafka's public API only, plus this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import FunctionType
from typing import Any, Final

import aiokafka
import aiokafka.conn as _conn
import aiokafka.errors as ke
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.sender import Sender

__all__ = [
    "WRITTEN_FOR",
    "admin_request",
    "group_member_id",
    "kafka_client",
    "open_connection",
    "register_error",
    "sender_task",
]

#: The aiokafka release the private APIs below were read from.
WRITTEN_FOR: Final = "0.14.0"


def _series(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _check_version(installed: str) -> None:
    if _series(installed) != _series(WRITTEN_FOR):
        raise ImportError(
            f"mirror.kafka uses private APIs of aiokafka {WRITTEN_FOR}, but aiokafka {installed} is "
            f"installed: install aiokafka=={'.'.join(_series(WRITTEN_FOR))}.* (constraints.txt), or check "
            "every API listed in mirror/kafka/_internals.py against the new release"
        )


def _require(owner: Any, name: str, *, set_in: str | None = None) -> None:
    """``owner.name`` exists, or (``set_in``) the method ``set_in`` of class ``owner`` uses that name
    (instance attributes exist only once an object is built: they are looked for in its code)."""
    label = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", str(owner))
    if set_in is None:
        if not hasattr(owner, name):
            raise ImportError(
                f"aiokafka {aiokafka.__version__}: {label}.{name} is gone (mirror.kafka._internals)"
            )
        return
    method = getattr(owner, set_in, None)
    code = getattr(method, "__code__", None)
    if not isinstance(method, FunctionType) or code is None or name not in code.co_names:
        raise ImportError(
            f"aiokafka {aiokafka.__version__}: {label}.{set_in} no longer uses {name} ({__name__})"
        )


_check_version(aiokafka.__version__)
_require(AIOKafkaAdminClient, "_client", set_in="__init__")
_require(AIOKafkaAdminClient, "_send_request")
_require(AIOKafkaAdminClient, "find_coordinator")
_require(AIOKafkaConsumer, "_client", set_in="__init__")
_require(AIOKafkaConsumer, "_coordinator", set_in="__init__")
_require(AIOKafkaProducer, "_sender", set_in="__init__")
_require(Sender, "sender_task")
_require(AIOKafkaClient, "force_metadata_update")
_require(_conn, "create_conn")
_require(ke, "kafka_errors")


# --- clients' insides ----------------------------------------------------------------------------------


def kafka_client(client: AIOKafkaConsumer | AIOKafkaAdminClient) -> AIOKafkaClient:
    """The connection and metadata client inside an aiokafka consumer or admin client (its ``cluster``
    metadata, ``force_metadata_update()``). A producer has it as its public ``client``."""
    return client._client


async def admin_request(client: AIOKafkaAdminClient, request: Any, node_id: int | None = None) -> Any:
    """Send one protocol request (a `aiokafka.protocol` request) to ``node_id``, or to any broker; the
    decoded response. aiokafka's errors as they are."""
    return await client._send_request(request, node_id)


def group_member_id(consumer: AIOKafkaConsumer) -> str | None:
    """The member id the group coordinator last gave this consumer (None before it joined)."""
    member: str | None = getattr(consumer._coordinator, "member_id", None)
    return member or None


def sender_task(producer: AIOKafkaProducer) -> asyncio.Task[Any] | None:
    """The producer's background sender (None when it never started)."""
    sender = getattr(producer, "_sender", None)
    task: asyncio.Task[Any] | None = getattr(sender, "sender_task", None)
    return task


#: `aiokafka.conn.create_conn`: one direct connection (and authentication) to one broker.
open_connection: Callable[..., Any] = _conn.create_conn


def register_error(cls: type[ke.BrokerResponseError]) -> None:
    """Make aiokafka raise ``cls`` for its error code (when it has no class of its own for it)."""
    ke.kafka_errors.setdefault(cls.errno, cls)
