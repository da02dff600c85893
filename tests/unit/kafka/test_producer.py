"""`mirror.kafka.producer`: produce error codes become aiokafka's errors, which `Pending.ack` translates as
the `Writer`'s are (docs/record-batches.md, "Producing"); the producer keys it reads itself are checked."""

from __future__ import annotations

import pytest

from mirror.config import ClusterSettings
from mirror.errors import AuthorizationFailed, KafkaRequestFailed, MirrorError, ProducerFenced, RecordRejected
from mirror.kafka import BatchProducer
from mirror.kafka.errors import delivery_error
from mirror.kafka.producer import response_error


def test_a_refused_batch_carries_the_brokers_message_and_the_records_it_names() -> None:
    error = response_error(87, "orders", "one record is bad", [(3, "null key on a compacted topic")])
    translated = delivery_error(error)
    assert isinstance(translated, RecordRejected)
    assert "one record is bad; record 3: null key on a compacted topic" in str(error)


def test_too_large_is_a_rejection_a_smaller_batch_may_pass() -> None:
    translated = delivery_error(response_error(10, "orders"))
    assert isinstance(translated, RecordRejected) and translated.too_large


def test_a_topic_authorization_failure_names_the_topic() -> None:
    translated = delivery_error(response_error(29, "orders"))
    assert isinstance(translated, AuthorizationFailed)
    assert "'orders'" in str(translated)


@pytest.mark.parametrize("code", [47, 90])
def test_a_fenced_epoch_is_producer_fenced(code: int) -> None:
    assert isinstance(delivery_error(response_error(code, "orders")), ProducerFenced)


def test_out_of_order_is_a_request_failure() -> None:
    assert isinstance(delivery_error(response_error(45, "orders")), KafkaRequestFailed)


@pytest.mark.parametrize("value", ["0", "five", "-1"])
async def test_a_bad_in_flight_limit_names_the_key_and_what_is_allowed(value: str) -> None:
    cluster = ClusterSettings(alias="b", bootstrap_servers="127.0.0.1:9")
    with pytest.raises(MirrorError, match=f"max.in.flight.requests.per.connection='{value}'.*at least 1"):
        BatchProducer(cluster, "test", {"max.in.flight.requests.per.connection": value})


async def test_the_batch_size_bounds_the_batches_it_builds() -> None:
    cluster = ClusterSettings(alias="b", bootstrap_servers="127.0.0.1:9")
    assert BatchProducer(cluster, "test", {}).max_batch_bytes == 1024 * 1024
    assert BatchProducer(cluster, "test", {"batch.size": "65536"}).max_batch_bytes == 65536
