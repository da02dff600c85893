"""`mirror.local.kafka`: a proxied cluster advertises the proxy's port on its extra listener (the
benchmark's WAN mode, `bench.wan`), so clients that bootstrap at the proxy stay behind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.local.kafka import Distribution, HarnessError, LocalKafkaCluster, Security


def _cluster(tmp_path: Path, **kwargs: object) -> LocalKafkaCluster:
    return LocalKafkaCluster("W", Distribution("kafka", "4.4.0", tmp_path), tmp_path / "W", **kwargs)  # type: ignore[arg-type]


def test_a_proxied_cluster_listens_on_its_own_port_and_advertises_the_proxys(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, proxied=True)
    props = cluster.server_properties()
    assert f"PROXIED://127.0.0.1:{cluster.proxied_port}" in props["listeners"].split(",")
    advertised = props["advertised.listeners"].split(",")
    assert advertised == [
        f"PLAINTEXT://127.0.0.1:{cluster.port}",
        f"PROXIED://127.0.0.1:{cluster.proxy_port}",
    ]
    assert "PROXIED:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert cluster.proxied_bootstrap_servers == f"127.0.0.1:{cluster.proxy_port}"
    assert len({cluster.port, cluster.proxied_port, cluster.proxy_port, cluster.controller_port}) == 4


def test_an_unproxied_cluster_has_one_client_listener(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    assert "PROXIED" not in cluster.server_properties()["listeners"]
    with pytest.raises(HarnessError, match="no proxied listener"):
        _ = cluster.proxied_bootstrap_servers


def test_a_secured_cluster_cannot_be_proxied(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, proxied=True, security=Security.sasl_plaintext({"u": "p"}))
    with pytest.raises(HarnessError, match="needs an unsecured cluster"):
        cluster.server_properties()
