"""`mirror progress reset`: where a reset puts each partition, and when it is refused."""

from __future__ import annotations

import pytest

from mirror.cli.progress import ProgressRow, parse_timestamp, refusal, reset_positions, running_workers
from mirror.config import ConfigError
from mirror.kafka.groups import GroupDescription, GroupMember
from mirror.replication.controls import Controls, pause_key, stamp

ROWS = [ProgressRow("t", 0, 50, 10, 100), ProgressRow("t", 1, None, 0, 20)]


def test_reset_targets() -> None:
    """Earliest/latest are the log bounds; an offset is clamped into them; a timestamp without a record at
    or after it goes to the end."""
    assert reset_positions(ROWS, "earliest") == {("t", 0): 10, ("t", 1): 0}
    assert reset_positions(ROWS, "latest") == {("t", 0): 100, ("t", 1): 20}
    assert reset_positions(ROWS, "offset", 5) == {("t", 0): 10, ("t", 1): 5}
    assert reset_positions(ROWS, "offset", 500) == {("t", 0): 100, ("t", 1): 20}
    assert reset_positions(ROWS, "timestamp", by_time={("t", 0): 60, ("t", 1): None}) == {
        ("t", 0): 60,
        ("t", 1): 20,
    }
    assert ROWS[0].lag == 50 and ROWS[1].lag == 20


def test_timestamps() -> None:
    assert parse_timestamp("1700000000000") == 1_700_000_000_000
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_timestamp("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC when no zone is named
    with pytest.raises(ConfigError, match="--to-timestamp"):
        parse_timestamp("yesterday")


def test_refused_unless_paused_long_enough_or_no_worker_runs_the_flow() -> None:
    controls = Controls("A->B")
    assert refusal(["t"], controls, 100.0, running=[]) is None  # nobody runs the flow
    why = refusal(["t", "u"], controls, 100.0, running=["w1"])
    assert why is not None and "not paused: t, u" in why
    controls.apply(pause_key("A->B", "t|u"), stamp("x", 95.0))
    why = refusal(["t", "u"], controls, 100.0, running=["w1"], settled=10.0)
    assert why is not None and "wait 5 s more" in why
    assert refusal(["t", "u"], controls, 106.0, running=["w1"], settled=10.0) is None


def test_while_the_group_rebalances_every_member_runs_the_flow() -> None:
    """DescribeGroups shows no assignments while a group rebalances, and its members may still be stopping
    their tasks (storing their progress): a reset then needs the pause like any other, not "no worker"."""
    worker = GroupMember("m1", "mirror-worker|h:1:ab|B|cfg", "/10.0.0.1")
    rebalancing = GroupDescription("mirror", "PreparingRebalance", "consumer", (worker,))
    assert running_workers(rebalancing, "mm2-tasks.A.internal") == ["mirror-worker|h:1:ab|B|cfg"]
    assert refusal(["t"], Controls("A->B"), 100.0, running_workers(rebalancing, "x")) is not None
    assert running_workers(GroupDescription("mirror", "CompletingRebalance", "consumer"), "x") != []
    stable = GroupDescription("mirror", "Stable", "consumer", (worker,))
    assert running_workers(stable, "mm2-tasks.A.internal") == []  # runs other flows only
    other = GroupMember("m2", "w2", "/10.0.0.2", (("mm2-tasks.A.internal", 0),))
    assert running_workers(
        GroupDescription("mirror", "Stable", "consumer", (worker, other)), "mm2-tasks.A.internal"
    ) == ["w2"]
