"""Shared pytest configuration and the real Kafka clusters of the integration and interop tests.

Clusters A and B start once per session (C on demand) from Maven Central jars (`mirror.local.kafka`);
no Docker engine is needed. When Java or Maven is missing the tests fail with a message saying so; they
never skip silently. Broker logs are kept in test-logs/ when a test failed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import structlog

from mirror.local.kafka import HarnessError, LocalKafka, LocalKafkaCluster

LOG_DIR = Path(__file__).resolve().parents[1] / "test-logs"

FAILED_KEY = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _default_logging() -> None:
    """Each test starts with structlog's defaults: tests that run the CLI configure it (level, output)."""
    structlog.reset_defaults()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.session.stash[FAILED_KEY] = True
    return report


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> Iterator[LocalKafka]:
    try:
        harness = LocalKafka()
        harness.add("A", "B")
    except HarnessError as exc:
        pytest.fail(f"cannot start real Kafka clusters for the integration tests: {exc}", pytrace=False)
    yield harness
    failed = request.session.stash.get(FAILED_KEY, False)
    harness.close(keep_logs_in=LOG_DIR if failed else None)


@pytest.fixture(scope="session")
def cluster_a(kafka: LocalKafka) -> LocalKafkaCluster:
    return kafka["A"]


@pytest.fixture(scope="session")
def cluster_b(kafka: LocalKafka) -> LocalKafkaCluster:
    return kafka["B"]


@pytest.fixture(scope="session")
def cluster_c(kafka: LocalKafka) -> LocalKafkaCluster:
    if "C" not in kafka.clusters:
        kafka.add("C")
    return kafka["C"]


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test (so tests never see each other's data)."""
    base = re.sub(r"[^a-zA-Z0-9-]", "-", request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"
