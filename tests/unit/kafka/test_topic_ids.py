"""Metadata v10/v12 as `mirror.kafka.topic_ids` writes and reads it (the wire format, without a broker)."""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import Any

from mirror.kafka import topic_ids
from mirror.kafka.topic_ids import TopicDescription, describe_topics, format_topic_id


def test_the_request_asks_for_every_topic_without_creating_any() -> None:
    request = topic_ids._AllTopicsMetadata()
    # topics: null compact array (varint 0), allow_auto_topic_creation false, [include cluster ops false,]
    # include topic ops false, no tagged fields
    assert request.build(topic_ids._MetadataRequest_v12).encode() == b"\x00\x00\x00\x00"
    assert request.build(topic_ids._MetadataRequest_v10).encode() == b"\x00\x00\x00\x00\x00"
    assert request.prepare({3: (0, 13)}).API_VERSION == 12
    assert request.prepare({3: (0, 10)}).API_VERSION == 10


def test_a_topic_id_prints_as_kafka_prints_it() -> None:
    raw = uuid.UUID("1f559aa8-653d-4278-9c35-708ddf35ae84").bytes
    assert format_topic_id(raw) == "H1WaqGU9QnicNXCN3zWuhA"


class _Admin:
    def __init__(self, response: Any) -> None:
        self.response = response

    async def raw_request(self, _request: Any) -> Any:
        return self.response


async def test_the_answer_gives_partitions_and_ids_of_listed_topics_only() -> None:
    one, two = uuid.uuid4().bytes, uuid.uuid4().bytes
    partition = (0, 0, 1, 5, [1], [1], [], {})
    topics = [
        (0, "orders", one, False, [partition, partition], -1, {}),
        (0, "__consumer_offsets", two, True, [partition], -1, {}),  # internal
        (3, "gone", bytes(16), False, [], -1, {}),  # an error
        (0, "old-broker", bytes(16), False, [partition], -1, {}),  # no id
    ]
    cls = topic_ids._MetadataResponse_v12
    encoded = cls(0, [(1, "localhost", 9092, None, {})], "cluster", 1, topics, {}).encode()
    response = cls.decode(BytesIO(encoded))  # what the broker's bytes decode to
    got = await describe_topics(_Admin(response))  # type: ignore[arg-type]
    assert got == {
        "orders": TopicDescription(2, format_topic_id(one)),
        "old-broker": TopicDescription(1, None),
    }
