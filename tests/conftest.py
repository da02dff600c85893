"""Shared pytest configuration: remember failures so the Kafka harness can keep broker logs for them."""

from __future__ import annotations

from collections.abc import Generator

import pytest

FAILED_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.session.stash[FAILED_KEY] = True
    return report
