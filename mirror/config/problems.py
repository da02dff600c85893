"""Configuration problems and their messages: the key as written, the value, what is allowed;
:class:`ConfigError` carries them all. Secret values are masked here (:func:`is_secret_key`), so no message
can show one; :func:`closest_key_hint` is the "did you mean" of unknown-key warnings.

The lowest configuration module: it imports nothing from :mod:`mirror.config`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MASK = "********"
_SECRET_MARKERS = ("password", "secret", "jaas", "keystore.key", "keystore_key", "credential", "token")


def is_secret_key(key: str) -> bool:
    """Whether values of this key (Java key, field name or override key) must never be shown.

    ``<field>_file`` keys name the file a secret is read from: the path is shown, not the secret."""
    lowered = key.lower()
    if lowered.endswith("_file"):
        return False
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _shown(key: str, value: object) -> str:
    if is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return str({k: MASK if is_secret_key(str(k)) else v for k, v in value.items()})
    return str(value)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: the key as the user wrote it, the value and what is allowed."""

    key: str
    value: str | None  # None when the key is missing; "********" for secrets
    allowed: str
    problem: str = "invalid value"

    @classmethod
    def of(cls, key: str, value: object, allowed: str, problem: str = "invalid value") -> ConfigProblem:
        """Build a problem, masking the value when the key holds a secret."""
        return cls(key, None if value is None else _shown(key, value), allowed, problem)

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.key}: {self.problem} (allowed: {self.allowed})"
        return f"{self.key}: {self.problem} '{self.value}' (allowed: {self.allowed})"  # as written, unescaped


class ConfigError(Exception):
    """Invalid configuration: ``key``, ``value``, ``allowed`` of the first problem; ``problems`` has all."""

    def __init__(self, key: str, value: object, allowed: str, *, problem: str = "invalid value") -> None:
        self.problems = [ConfigProblem.of(key, value, allowed, problem)]
        super().__init__(key)

    @classmethod
    def from_problems(cls, problems: Sequence[ConfigProblem]) -> ConfigError:
        """One error reporting every problem (there must be at least one)."""
        first = problems[0]
        error = cls(first.key, first.value, first.allowed, problem=first.problem)
        error.problems = list(problems)
        return error

    @property
    def key(self) -> str:
        return self.problems[0].key

    @property
    def value(self) -> str | None:
        return self.problems[0].value

    @property
    def allowed(self) -> str:
        return self.problems[0].allowed

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        return f"{len(self.problems)} configuration problems:\n" + "\n".join(f"- {p}" for p in self.problems)


def closest_key_hint(key: str, known: Iterable[str]) -> str:
    """``did you mean 'x'?`` naming the known key closest to ``key`` (difflib), for unknown-key warnings."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else "no similar key is known"
