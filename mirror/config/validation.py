"""Validation of the layers and of the resolved settings, turning pydantic's errors into ConfigProblems."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from mirror.config.client_keys import ROLES, client_key_problems
from mirror.config.fields import Allowed
from mirror.config.layer import ConfigLayer
from mirror.config.models import SECTION_MODELS, FlowSettings, ServiceSettings, Settings
from mirror.config.problems import ConfigError, ConfigProblem
from mirror.config.routing import TARGET_WORKER_KEYS, split_flow_name


def layer_problems(layer: ConfigLayer, aliases: Sequence[str]) -> list[ConfigProblem]:
    """Problems of one layer: its own, each value checked against its field, each client override against
    :mod:`mirror.config.client_keys`, and flows of unknown clusters. Unknown client keys are added to the
    layer's warnings."""
    problems = list(layer.problems)
    for section, model in SECTION_MODELS.items():
        owners = (
            layer.data[section].items() if section in ("clusters", "flows") else [("", layer.data[section])]
        )
        for owner, fields in owners:
            path = (section, owner) if owner else (section,)
            problems += _field_problems(layer, path, model, fields)
            problems += _client_key_problems(layer, path, fields)
            if section == "clusters":
                problems += _worker_key_problems(layer, path, fields.get("properties", {}))
    for name in layer.data["flows"]:
        problems += _flow_cluster_problems(layer, name, aliases)
    return problems


def _field_problems(
    layer: ConfigLayer, path: tuple[str, ...], model: type[BaseModel], fields: dict[str, Any]
) -> list[ConfigProblem]:
    """Validate each value on its own, storing the validated value back into the layer."""
    problems = []
    for name, value in fields.items():
        try:
            fields[name] = _adapter(model, name).validate_python(value)
        except ValidationError as exc:
            info = model.model_fields[name]
            problems.append(
                ConfigProblem.of(layer.origin((*path, name)), value, _allowed(info, exc.errors()[0]))
            )
    return problems


def _client_key_problems(
    layer: ConfigLayer, path: tuple[str, ...], fields: Mapping[str, Any]
) -> list[ConfigProblem]:
    """Check the client overrides (``consumer``, ``producer``, ``admin``) of one cluster or flow, each key
    named as written (or, inside a JSON mapping, by the variable that holds it)."""
    problems = []
    for role in ROLES:
        overrides = fields.get(role)
        if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
            continue  # absent, or not a mapping of Java values (already reported)
        for key, value in overrides.items():
            written = layer.origins.get((*path, role, key)) or layer.origin((*path, role))
            found = client_key_problems(role, key, value, written=written, of_cluster=path[0] == "clusters")
            if found.problem is not None:
                problems.append(found.problem)
            if found.warning is not None:
                layer.warnings.append(found.warning)
    return problems


def _worker_key_problems(
    layer: ConfigLayer, path: tuple[str, ...], properties: Mapping[str, Any]
) -> list[ConfigProblem]:
    """A target cluster's worker keys (``B.offset.flush.interval.ms``) must be valid for their flow field."""
    problems = []
    for key, name in TARGET_WORKER_KEYS.items():
        if key in properties:
            try:
                _adapter(FlowSettings, name).validate_python(properties[key])
            except ValidationError as exc:
                allowed = _allowed(FlowSettings.model_fields[name], exc.errors()[0])
                origin = layer.origin((*path, "properties", key))
                problems.append(ConfigProblem.of(origin, properties[key], allowed))
    return problems


def _flow_cluster_problems(layer: ConfigLayer, name: str, aliases: Sequence[str]) -> list[ConfigProblem]:
    known = ", ".join(aliases) or "(no clusters are defined)"
    origin = layer.origin(("flows", name))
    if (pair := split_flow_name(name)) is None:
        return [ConfigProblem.of(origin, None, "<source>-><target>, such as A->B", "malformed flow key")]
    source, target = pair
    if source == target:
        return [ConfigProblem.of(origin, name, "two different clusters", "invalid flow")]
    return [
        ConfigProblem.of(origin, alias, known, "unknown cluster")
        for alias in (source, target)
        if alias not in aliases
    ]


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """A validator for one field of ``model``, with its constraints."""
    info = model.model_fields[name]
    form: Any = Annotated[info.annotation, info]
    return TypeAdapter(form)


def _allowed(info: FieldInfo | None, error: ErrorDetails) -> str:
    """What a field accepts, in words, plus the validator's own explanation if it gave one."""
    ctx = error.get("ctx") or {}
    if "allowed" in ctx:
        return str(ctx["allowed"])
    described = _describe(info) if info is not None else "a valid value"
    if error["type"] == "value_error":
        return f"{described}; {ctx.get('error', error['msg'])}"
    return described


def _describe(info: FieldInfo) -> str:
    for item in info.metadata:
        if isinstance(item, Allowed):
            return item.text
    annotation = info.annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not NoneType)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(arg) for arg in get_args(annotation))
    names: dict[object, str] = {bool: "true or false", int: "an integer", float: "a number"}
    return names.get(annotation, "a string") + _bounds(info.metadata)


def _bounds(metadata: Sequence[Any]) -> str:
    low = next((f">= {item.ge}" for item in metadata if isinstance(item, Ge)), None)
    low = low or next((f"> {item.gt}" for item in metadata if isinstance(item, Gt)), None)
    high = next((item.le for item in metadata if isinstance(item, Le)), None)
    if low and high is not None:
        return f" from {low.removeprefix('>= ')} to {high}"
    return f" {low}" if low else ""


def validated(resolved: dict[str, Any], namer: Callable[[Sequence[str]], str]) -> Settings:
    """The final, whole-model validation; errors are named with ``namer`` (mm2.properties or dotted keys)."""
    try:
        return Settings.model_validate(resolved)
    except ValidationError as exc:
        problems = [_problem(error, namer) for error in exc.errors()]
    # Not chained: a ValidationError's text shows input values, which may hold secrets.
    raise ConfigError.from_problems(problems)


def _problem(error: ErrorDetails, namer: Callable[[Sequence[str]], str]) -> ConfigProblem:
    loc = [str(part) for part in error["loc"]]
    ctx = error.get("ctx") or {}
    if "field" in ctx:
        loc += str(ctx["field"]).split(".", 3)  # section, name, role, then a client key (dots kept)
    info = _field_info(loc)
    if error["type"] == "missing":
        return ConfigProblem.of(namer(loc), None, _allowed(info, error), "missing value")
    if error["type"] == "mirror_config":
        return ConfigProblem(namer(loc), None, _allowed(info, error), error["msg"])
    return ConfigProblem.of(namer(loc), error["input"], _allowed(info, error))


def _field_info(loc: Sequence[str]) -> FieldInfo | None:
    """The model field at an error location such as ``("clusters", "A", "sasl_mechanism")``."""
    if loc and loc[0] in Settings.model_fields and len(loc) == 1:
        return Settings.model_fields[loc[0]]
    if len(loc) >= 3 and loc[0] in ("clusters", "flows"):
        return SECTION_MODELS[loc[0]].model_fields.get(loc[2])
    if len(loc) >= 2 and loc[0] == "service":
        return ServiceSettings.model_fields.get(loc[1])
    return None
