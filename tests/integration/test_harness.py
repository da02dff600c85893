"""The local Kafka harness gives real, independent clusters: round trips and admin calls on each."""

from __future__ import annotations

import pytest

from mirror.local.kafka import LocalKafkaCluster

from .support import consume, create_topic, list_topics, produce


@pytest.mark.parametrize("alias", ["A", "B"])
async def test_round_trip_on_each_cluster(
    alias: str, cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str
) -> None:
    cluster = {"A": cluster_a, "B": cluster_b}[alias]
    await create_topic(cluster.bootstrap_servers, topic, 2)
    recs = {
        p: [(b"k%d" % i, b"v%d" % i, (("h", b"x"),), 1_600_000_000_000 + i) for i in range(10)]
        for p in (0, 1)
    }
    await produce(cluster.bootstrap_servers, topic, recs)
    got = await consume(cluster.bootstrap_servers, topic, {0: 10, 1: 10}, timeout=30)
    assert got == recs


async def test_clusters_are_independent(
    cluster_a: LocalKafkaCluster, cluster_b: LocalKafkaCluster, topic: str
) -> None:
    assert cluster_a.bootstrap_servers != cluster_b.bootstrap_servers
    await create_topic(cluster_a.bootstrap_servers, topic, 1)
    assert topic in await list_topics(cluster_a.bootstrap_servers)
    assert topic not in await list_topics(cluster_b.bootstrap_servers)
