"""The worker's status snapshot (`mirror.service.status`): readiness derived from the flows, immutability,
and the /status JSON written and read back without loss."""

from __future__ import annotations

import dataclasses

import pytest

from mirror.service.status import (
    ClusterStatus,
    FlowStatus,
    GroupMember,
    GroupStatus,
    HaltedPartition,
    JobStatus,
    TaskStatus,
    TopicLag,
    WorkerStatus,
)


def flow(**fields: object) -> FlowStatus:
    base: dict[str, object] = {"flow": "A->B", "source": "A", "target": "B", "replicating": True}
    return FlowStatus(**{**base, "state": "running", **fields})  # type: ignore[arg-type]


def test_readiness_is_derived_from_the_flows() -> None:
    """A flow not running is one reason (its clusters and tasks are not looked at); a running flow's
    unreachable clusters and tasks not running are one reason each, in that order."""
    starting = flow(flow="C->D", source="C", target="D", state="retrying", last_error="cannot connect",
                    tasks=(TaskStatus(0, "retrying", last_error="x"),))  # fmt: skip
    running = flow(
        clusters={"A": ClusterStatus(True, None, 1.0), "B": ClusterStatus(False, "refused", 1.0)},
        tasks=(TaskStatus(0, "running"), TaskStatus(1, "starting")),
    )
    status = WorkerStatus.of("1.0", "host:1", [running, starting])
    assert status.reasons == (
        "flow A->B: cluster B unreachable: refused",
        "flow A->B task 1 is starting:",  # no error yet (as /readyz has always said it)
        "flow C->D is retrying: cannot connect",
    )
    assert status.ready is False
    assert WorkerStatus.of("1.0", "host:1", [flow(tasks=(TaskStatus(0, "running"),))]).ready is True
    assert WorkerStatus.of("1.0", "host:1", []).ready is True


def test_the_snapshot_is_immutable() -> None:
    status = WorkerStatus.of("1.0", "host:1", [flow()])
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.flows[0].state = "stopped"  # type: ignore[misc]


def test_the_document_reads_back_as_the_same_snapshot() -> None:
    """`WorkerStatus.from_json` is the inverse of `WorkerStatus.to_json`, groups included."""
    halted = HaltedPartition("orders", 2, 41, "InvalidTimestampError")
    status = WorkerStatus.of(
        "1.0",
        "host:1",
        [
            flow(
                topics=2, partitions=5, task_count=2, topic_errors={"bad": "denied"}, lag_records=7,
                lag={"orders": TopicLag("A.orders", 3, 7)},
                clusters={"A": ClusterStatus(True, None, 1.5), "B": ClusterStatus(False, "refused", 2.5)},
                jobs=(JobStatus("heartbeat"), JobStatus("checkpoint", "timed out")),
                tasks=(TaskStatus(0, "running", 3, 10, 1, 7, None, (halted,)),),
            ),
            flow(flow="B->A", source="B", target="A", replicating=False),
        ],
    ).with_groups(
        {
            "A": GroupStatus("mirror", error="coordinator not available"),
            "B": GroupStatus("mirror", "Stable", (GroupMember("h1:10", "/10.0.0.1", True, ("t/0",)),)),
        }
    )  # fmt: skip
    doc = status.to_json()
    assert doc["groups"] == {
        "A": {"group": "mirror", "error": "coordinator not available"},
        "B": {
            "group": "mirror",
            "state": "Stable",
            "workers": [
                {"worker": "h1:10", "host": "/10.0.0.1", "this": True, "tasks": ["t/0"], "config": None}
            ],
        },
    }
    assert WorkerStatus.from_json(doc) == status
    assert "groups" not in dataclasses.replace(status, groups=None).to_json()


def test_a_sparse_document_reads_with_defaults() -> None:
    """An older server's (or an empty) document still reads: missing fields take their defaults."""
    status = WorkerStatus.from_json({"flows": [{"flow": "B->A", "tasks": [{"state": "running"}]}]})
    assert (status.version, status.worker, status.ready, status.reasons, status.groups) == (
        "?",
        "?",
        False,
        (),
        None,
    )
    (only,) = status.flows
    assert (only.source, only.target, only.replicating, only.state, only.lag_records) == (
        "B",
        "A",
        True,
        "?",
        0,
    )
    assert only.tasks == (TaskStatus(-1, "running"),)
    assert WorkerStatus.from_json({}) == WorkerStatus("?", "?", ready=False)
