"""Moving a group between two clusters that replicate to each other (`plan_moves`, pure)."""

from __future__ import annotations

from mirror.mm2.group_move import Move, plan_moves
from mirror.mm2.policy import DefaultReplicationPolicy
from mirror.mm2.records import OffsetSync
from mirror.mm2.sync_history import SyncHistory

POLICY = DefaultReplicationPolicy()


def history(topic: str, *syncs: tuple[int, int]) -> SyncHistory:
    h = SyncHistory(initialization_must_read_to_end=False)
    for u, d in syncs:
        h.update(OffsetSync(topic, 0, u, d), b"w")  # one precise writer session
    h.mark_read_to_end()
    return h


def test_failback_moves_copies_back_and_local_topics_forward() -> None:
    """On B after a failover: `A.orders` (A's records, via A->B's syncs backwards) and `orders` (produced on
    B meanwhile, via B->A's syncs) both land on A; a topic B->A does not copy has no counterpart."""
    a_to_b = history("orders", (0, 10), (0, 10), (100, 110), (200, 210), (300, 310))
    b_to_a = history("orders", (0, 0), (0, 0), (50, 50), (90, 90))
    offsets = {
        ("A.orders", 0): (160, "m"),
        ("orders", 0): (40, ""),
        ("private", 0): (7, ""),
    }
    moves = plan_moves(
        offsets,
        policy=POLICY,
        leaving="B",
        joining="A",
        forward=b_to_a,
        back=a_to_b,
        replicated=lambda t: t != "private",
    )
    assert moves == [
        Move("A.orders", 0, 160, "orders", 150, 0, "back", "m"),
        Move("orders", 0, 40, "B.orders", 40, 0, "forward", ""),
        Move("private", 0, 7, None, None, None, "not replicated", ""),
    ]


def test_untranslatable_partitions_say_why() -> None:
    offsets = {("A.orders", 0): (5, ""), ("orders", 0): (3, "")}
    kwargs = {"policy": POLICY, "leaving": "B", "joining": "A", "replicated": lambda t: True}
    moves = plan_moves(offsets, forward=None, back=history("orders", (0, 10)), **kwargs)  # type: ignore[arg-type]
    assert [(m.how, m.translated) for m in moves] == [("before the first sync", False), ("no syncs", False)]
