"""The sources of settings, each read into a :class:`~mirror.config.layer.ConfigLayer`: mm2.properties,
YAML and TOML files and ``MIRROR_*`` environment variables."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic.fields import FieldInfo

from mirror.config.layer import SECTIONS, ConfigLayer
from mirror.config.models import IMPLIED_FIELDS, SECTION_MODELS, Settings
from mirror.config.problems import ConfigError, closest_key_hint
from mirror.config.properties import Property, parse_properties
from mirror.config.routing import properties_layer, split_flow_name


def read_properties(
    text: str, *, source: str, aliases: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> ConfigLayer:
    """Parse and route the text of an mm2.properties file (the last of repeated keys wins, as in Java).

    ``env`` is what ``${env:NAME}`` variables read (default: the process environment)."""
    entries, problems = parse_properties(text, source=source)
    latest: dict[str, Property] = {}
    warnings: list[str] = []
    for entry in entries:
        if entry.key in latest:
            first = latest.pop(entry.key).line
            warnings.append(
                f"key {entry.key!r} is set on lines {first} and {entry.line}; the last value wins"
            )
        latest[entry.key] = entry
    layer = properties_layer({key: entry.value for key, entry in latest.items()}, aliases=aliases, env=env)
    layer.problems[:0] = problems
    layer.warnings[:0] = warnings
    return layer


def read_file(path: Path, aliases: Sequence[str], env: Mapping[str, str]) -> ConfigLayer:
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[str], ConfigLayer]] = {
        ".properties": lambda text: read_properties(text, source=str(path), aliases=aliases, env=env),
        ".yaml": lambda text: _document_layer(_parse_yaml(text, path)),
        ".yml": lambda text: _document_layer(_parse_yaml(text, path)),
        ".toml": lambda text: _document_layer(_parse_toml(text, path)),
    }
    if suffix not in readers:
        raise ConfigError(
            str(path), suffix, "a .properties, .yaml, .yml or .toml file", problem="unknown file type"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), None, "a readable file", problem=f"cannot read ({exc.strerror})"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # what java.util.Properties.load reads
    return readers[suffix](text)


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(where, None, "valid YAML", problem=f"cannot parse ({reason})") from None


def _parse_toml(text: str, path: Path) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))  # Python 3.11 has no TOMLDecodeError.lineno
        where = f"{path}:{line[1]}" if line else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(where, None, "valid TOML", problem=f"cannot parse ({reason})") from None


def _document_layer(document: object) -> ConfigLayer:
    """A YAML/TOML document: sections as in ConfigLayer.data, fields named as in the models."""
    layer = ConfigLayer()
    if document is None:
        return layer
    if not isinstance(document, Mapping):
        layer.fail(
            "(document)", type(document).__name__, f"a mapping with the sections {', '.join(SECTIONS)}"
        )
        return layer
    for section, content in document.items():
        if section not in SECTIONS:
            layer.warnings.append(
                f"unknown key {section!r} is ignored; {closest_key_hint(str(section), SECTIONS)}"
            )
        elif content is not None and not isinstance(content, Mapping):
            layer.fail(section, content, "a mapping")
        elif section in ("clusters", "flows"):
            _document_entries(layer, section, content or {})
        else:
            _document_fields(layer, (section,), content or {})
    return layer


def _document_entries(layer: ConfigLayer, section: str, entries: Mapping[Any, Any]) -> None:
    if section == "clusters":
        layer.aliases = [str(alias) for alias in entries]
    for name, fields in entries.items():
        path = (section, str(name))
        if section == "flows" and split_flow_name(str(name)) is None:
            layer.fail(f"flows.{name}", None, "<source>-><target>, such as A->B", "malformed flow key")
        elif fields is not None and not isinstance(fields, Mapping):
            layer.fail(".".join(path), fields, "a mapping")
        else:
            layer.set(path, {}, ".".join(path))
            _document_fields(layer, path, fields or {})


def _document_fields(layer: ConfigLayer, path: tuple[str, ...], fields: Mapping[Any, Any]) -> None:
    model = SECTION_MODELS[path[0]]
    implied = IMPLIED_FIELDS.get(path[0], ())
    for name, value in fields.items():
        key = ".".join((*path, str(name)))
        if name in implied:
            layer.warnings.append(f"{key!r} is ignored; it is implied by the enclosing key")
        elif name in model.model_fields:
            layer.set((*path, name), value, key)
            if isinstance(value, Mapping):  # client overrides: each key is named as written
                for inner in value:
                    layer.origins[(*path, name, str(inner))] = f"{key}.{inner}"
        else:
            known = [".".join((*path, known)) for known in model.model_fields if known not in implied]
            layer.warnings.append(f"unknown key {key!r} is ignored; {closest_key_hint(key, known)}")


def read_env(env: Mapping[str, str]) -> ConfigLayer:
    """``MIRROR_CLUSTERS__<alias>__<FIELD>[__<client key>]``, ``MIRROR_FLOWS__<A->B or A__B>__<FIELD>...``,
    ``MIRROR_DEFAULTS__<FIELD>``, ``MIRROR_CLUSTER_DEFAULTS__<FIELD>``, ``MIRROR_SERVICE__<FIELD>``.

    Sections and fields are case-insensitive; aliases and client keys keep their case. List and mapping
    values may be JSON; lists may also be comma-separated.
    """
    layer = ConfigLayer()
    prefix = Settings.model_config.get("env_prefix", "")
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        parts = name.removeprefix(prefix).split(delimiter)
        path = _env_path(parts)
        if path is None:
            hint = closest_key_hint(name, _env_names_like(parts, prefix, delimiter))
            layer.warnings.append(f"unknown environment variable {name!r} is ignored; {hint}")
            continue
        layer.set(path, _env_value(path, value), name)
    return layer


def _env_path(parts: list[str]) -> tuple[str, ...] | None:
    """The ConfigLayer path named by the parts of an environment variable, or None."""
    section, *rest = parts
    section = section.lower()
    owner: tuple[str, ...] = ()
    if len(rest) >= 2 and (section == "clusters" or (section == "flows" and "->" in rest[0])):
        owner, rest = (rest[0],), rest[1:]
    elif section == "flows" and len(rest) >= 3:
        owner, rest = (f"{rest[0]}->{rest[1]}",), rest[2:]
    elif section not in ("cluster_defaults", "defaults", "service") or not rest:
        return None
    field, *inner = rest
    info = SECTION_MODELS[section].model_fields.get(field.lower())
    if info is None or (inner and not _is_mapping_field(info)) or len(inner) > 1:
        return None
    return (section, *owner, field.lower(), *inner)


def _env_names_like(parts: list[str], prefix: str, delimiter: str) -> list[str]:
    """Valid variable names that differ from ``parts`` in the section or in the last (field) part."""
    section = parts[0].lower()
    if section not in SECTION_MODELS:
        return [prefix + delimiter.join([known.upper(), *parts[1:]]) for known in SECTIONS]
    fields = SECTION_MODELS[section].model_fields
    return [prefix + delimiter.join([*parts[:-1], field.upper()]) for field in fields]


def _is_mapping_field(info: FieldInfo) -> bool:
    return get_origin(info.annotation) is dict


def _is_container_field(info: FieldInfo) -> bool:
    annotation = info.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(option) in (list, dict) for option in options)


def _env_value(path: tuple[str, ...], value: str) -> Any:
    """JSON lists and mappings are decoded for list and mapping fields; anything else stays a string."""
    info = SECTION_MODELS[path[0]].model_fields.get(path[-1])
    if info is None or not _is_container_field(info) or not value.lstrip().startswith(("[", "{")):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return value  # e.g. a regex starting with a character class
    return decoded if isinstance(decoded, list | dict) else value
