"""Loading settings (:func:`load_settings`) and their redacted dump (:func:`redacted`).

:func:`load_settings` reads up to three sources, first wins: ``overrides`` (command-line ``--set`` lines, with
mm2.properties semantics), ``MIRROR_*`` environment variables, then the file (``.properties`` is Java's
mm2.properties, ``.yaml``/``.yml`` and ``.toml`` are documents in the models' own field names). Each source
becomes a :class:`~mirror.config.layer.ConfigLayer` whose values are validated where they
were written, so an error names the key the user typed. The layers are merged and resolved like Java
MM2 does it: every ordered pair of clusters is a flow, built from the field defaults, the target
cluster's worker keys, the top-level (``defaults``) keys and the flow's own keys, each overriding
the previous.
Bad input raises :class:`ConfigError` (never pydantic's ValidationError); questionable input (unknown
keys) becomes a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.config.layer import SECTIONS, ConfigLayer
from mirror.config.models import Settings
from mirror.config.problems import MASK, ConfigError, is_secret_key
from mirror.config.routing import TARGET_WORKER_KEYS, java_key, properties_layer
from mirror.config.sources import read_env, read_file
from mirror.config.validation import layer_problems, validated


@dataclass
class LoadedSettings:
    """The result of :func:`load_settings`."""

    settings: Settings
    warnings: list[str]
    source_path: Path | None


def load_settings(
    config_path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Read, merge, resolve and validate the configuration (see the module docstring); ConfigError if bad."""
    environment = os.environ if env is None else env
    env_layer = read_env(environment)
    file_layer = (
        ConfigLayer() if config_path is None else read_file(config_path, _aliases([env_layer]), environment)
    )
    override_layer = properties_layer(overrides or {}, aliases=_aliases([file_layer, env_layer]))
    layers = [file_layer, env_layer, override_layer]  # lowest precedence first
    aliases = _aliases(layers)
    problems = [problem for layer in layers for problem in layer_problems(layer, aliases)]
    if problems:
        raise ConfigError.from_problems(problems)
    is_properties = config_path is not None and config_path.suffix.lower() == ".properties"
    settings = validated(_resolve(layers, aliases), java_key if is_properties else ".".join)
    return LoadedSettings(settings, [w for layer in layers for w in layer.warnings], config_path)


def _aliases(layers: Iterable[ConfigLayer]) -> list[str]:
    """The cluster list: the latest one declared (``clusters=``, a document's keys) plus later additions."""
    aliases: list[str] = []
    for layer in layers:
        if layer.aliases is not None:
            aliases = list(layer.aliases)
        aliases += [alias for alias in layer.data["clusters"] if alias not in aliases]
    return aliases


def _resolve(layers: Sequence[ConfigLayer], aliases: Sequence[str]) -> dict[str, Any]:
    """Merge the layers and build every cluster and every ordered pair of clusters, the way Java MM2 does."""
    merged: dict[str, Any] = {section: {} for section in SECTIONS}
    for layer in layers:
        merged = _deep_merge(merged, layer.data)
    clusters = {
        alias: _deep_merge(merged["cluster_defaults"], merged["clusters"].get(alias, {})) for alias in aliases
    }
    flows = {}
    for source in aliases:
        for target in aliases:
            if source == target:
                continue
            name = f"{source}->{target}"
            properties = clusters[target].get("properties", {})
            worker = {
                field: properties[key] for key, field in TARGET_WORKER_KEYS.items() if key in properties
            }
            flow = _deep_merge(_deep_merge(worker, merged["defaults"]), merged["flows"].get(name, {}))
            flows[name] = {**flow, "source": source, "target": target}
    return {"clusters": clusters, "flows": flows, "service": merged["service"]}


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- Redaction ---------------------------------------------------------------------------------------------


def redacted(settings: Settings) -> dict[str, Any]:
    """A JSON-able dump of ``settings`` in which every secret value is replaced by ``"********"``."""
    dump: dict[str, Any] = _redact(settings.model_dump(mode="json"), "")
    return dump


def _redact(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {name: _redact(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, key) for item in value]
    return MASK if value is not None and is_secret_key(key) else value


def config_digest(settings: Settings) -> str:
    """A short digest of the effective configuration (secrets masked): equal on workers that agree."""
    text = json.dumps(redacted(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
