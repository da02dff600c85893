"""Small types every layer shares (this module imports nothing of `mirror`)."""

from __future__ import annotations

__all__ = ["TP"]

TP = tuple[str, int]
"""A topic partition: (topic, partition)."""
