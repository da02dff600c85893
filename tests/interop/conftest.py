"""Interop tests: Java MirrorMaker 2's own code (from Maven Central) against what `mirror` wrote.

The real Kafka clusters are the shared fixtures
of tests/conftest.py. Like those tests, these fail (never skip)
when Java, javac or Maven is missing.
"""

from __future__ import annotations

import pytest

from mirror.local.kafka import Distribution, HarnessError, resolve_mirrormaker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/interop" in str(item.path):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def mirrormaker() -> Distribution:
    """The jars of Java MM2 (connect-mirror and connect-mirror-client), resolved once and cached."""
    try:
        return resolve_mirrormaker()
    except HarnessError as exc:
        pytest.fail(f"cannot resolve Java MirrorMaker 2 for the interop tests: {exc}", pytrace=False)
