"""One configuration source in the dict form of the models, with the key each value was written as."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirror.config.problems import ConfigProblem

SECTIONS = ("clusters", "cluster_defaults", "defaults", "flows", "service")


@dataclass
class ConfigLayer:
    """One configuration source in the dict form of ``mirror.config``'s models, not yet validated.

    ``data`` has the sections ``clusters`` (alias -> ClusterSettings fields), ``cluster_defaults``
    (ClusterSettings fields for every cluster), ``defaults`` (FlowSettings fields for every flow), ``flows``
    ("A->B" -> FlowSettings fields) and ``service`` (ServiceSettings fields). ``aliases`` is the cluster list
    if this source declares one. ``origins`` maps each path set in ``data`` to the key as the user wrote it.
    """

    aliases: list[str] | None = None
    data: dict[str, Any] = field(default_factory=lambda: {section: {} for section in SECTIONS})
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)

    def set(self, path: tuple[str, ...], value: Any, written: str) -> None:
        """Store ``value`` at ``path`` inside ``data``, remembering that the user wrote it as ``written``."""
        node = self.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        self.origins[path] = written

    def origin(self, path: tuple[str, ...]) -> str:
        """The key as written for ``path`` (or for the first key set below it)."""
        if path in self.origins:
            return self.origins[path]
        below = (written for known, written in self.origins.items() if known[: len(path)] == path)
        return next(below, ".".join(path))

    def fail(self, key: str, value: object, allowed: str, problem: str = "invalid value") -> None:
        """Record a problem with ``key``."""
        self.problems.append(ConfigProblem.of(key, value, allowed, problem))
