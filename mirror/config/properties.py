"""Java ``.properties`` syntax (``java.util.Properties.load``) and Java's config providers
(``${file:...}``, ``${dir:...}``, ``${env:...}``), replaced before the keys are routed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.config.layer import ConfigLayer
from mirror.config.problems import ConfigProblem

# --- java.util.Properties syntax ------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    """One ``key=value`` entry of a .properties file, after unescaping, with its (first) line number."""

    key: str
    value: str
    line: int


_BLANKS = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(
    text: str, *, source: str = "<properties>"
) -> tuple[list[Property], list[ConfigProblem]]:
    """Parse ``text`` with the rules of ``java.util.Properties.load``; problems are keyed ``source:line``."""
    entries: list[Property] = []
    problems: list[ConfigProblem] = []
    for line_number, logical in _logical_lines(text):
        raw_key, raw_value = _split_key_value(logical)
        try:
            entries.append(Property(_unescape(raw_key), _unescape(raw_value), line_number))
        except ValueError as exc:
            problems.append(
                ConfigProblem.of(f"{source}:{line_number}", None, "\\uXXXX with 4 hex digits", str(exc))
            )
    return entries, problems


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Join continued lines, drop blank and comment lines; yield (first line number, logical line)."""
    pending: str | None = None
    start = 0
    for number, natural in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = natural.lstrip(_BLANKS)
        if pending is None:
            if not stripped or stripped[0] in "#!":
                continue
            pending, start = "", number
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            pending += stripped[:-1]
            continue
        yield start, pending + stripped
        pending = None
    if pending is not None:
        yield start, pending


def _split_key_value(line: str) -> tuple[str, str]:
    """Split at the first unescaped ``=``, ``:`` or blank, as Java does."""
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char in "=:":
            return line[:i], line[i + 1 :].lstrip(_BLANKS)
        if char in _BLANKS:
            rest = line[i:].lstrip(_BLANKS)
            if rest[:1] in ("=", ":") and rest:
                rest = rest[1:].lstrip(_BLANKS)
            return line[:i], rest
        i += 1
    return line, ""


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        escaped = text[i + 1]
        if escaped == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("malformed \\uxxxx escape")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(escaped, escaped))
        i += 2
    # \uXXXX escapes are UTF-16 code units, as in Java: join surrogate pairs into one character.
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# --- config.providers (Java's ConfigTransformer) ---------------------------------------------------

#: ``${provider:[path:]key}``, Java's ConfigTransformer.DEFAULT_PATTERN.
_VARIABLE = re.compile(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")
_PROVIDERS = {
    "org.apache.kafka.common.config.provider.FileConfigProvider": "file",
    "org.apache.kafka.common.config.provider.DirectoryConfigProvider": "directory",
    "org.apache.kafka.common.config.provider.EnvVarConfigProvider": "env",
}
_PROVIDERS_ALLOWED = ", ".join(f"{name} (in {cls.rpartition('.')[0]})" for cls, name in _PROVIDERS.items())


@dataclass(frozen=True)
class _Provider:
    kind: str  # "file", "directory" or "env"
    params: Mapping[str, str]


def resolve_variables(
    layer: ConfigLayer, values: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """Replace the variables of declared config providers in every value; a key whose variable cannot be
    resolved is reported (without its value) and dropped. Undeclared providers are left as written."""
    providers = _config_providers(layer, values)
    if not providers:
        return dict(values)
    files: dict[str, dict[str, str]] = {}
    resolved: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("config.providers") or "${" not in value:
            resolved[key] = value
            continue
        failures: list[str] = []

        def lookup(match: re.Match[str], failures: list[str] = failures) -> str:
            provider = providers.get(match[1])
            if provider is None:
                return match[0]
            try:
                return _provider_value(provider, match[2] or "", match[3], env, files)
            except ValueError as exc:
                failures.append(f"cannot resolve {match[0]} ({exc})")
                return match[0]

        replaced = _VARIABLE.sub(lookup, value)
        if failures:
            layer.fail(key, None, "a value whose config-provider variables resolve", "; ".join(failures))
        else:
            resolved[key] = replaced.strip()
    return resolved


def _config_providers(layer: ConfigLayer, values: Mapping[str, str]) -> dict[str, _Provider]:
    providers: dict[str, _Provider] = {}
    for name in (n.strip() for n in values.get("config.providers", "").split(",")):
        if not name:
            continue
        class_key = f"config.providers.{name}.class"
        cls = values.get(class_key)
        if cls is None:
            layer.fail(class_key, None, _PROVIDERS_ALLOWED, "missing value")
        elif cls not in _PROVIDERS:
            layer.fail(class_key, cls, _PROVIDERS_ALLOWED, "unsupported config provider")
        else:
            prefix = f"config.providers.{name}.param."
            params = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
            providers[name] = _Provider(_PROVIDERS[cls], params)
    return providers


def _provider_value(
    provider: _Provider, path: str, key: str, env: Mapping[str, str], files: dict[str, dict[str, str]]
) -> str:
    if provider.kind == "env":
        pattern = provider.params.get("allowlist.pattern")
        if pattern is not None and re.fullmatch(pattern, key) is None:
            raise ValueError(f"{key} does not match the provider's allowlist.pattern")
        if key not in env:
            raise ValueError(f"environment variable {key} is not set")
        return env[key]
    if not path:
        raise ValueError("a path is required: ${provider:path:key}")
    target = Path(path) / key if provider.kind == "directory" else Path(path)
    allowed = [Path(p.strip()) for p in provider.params.get("allowed.paths", "").split(",") if p.strip()]
    if allowed and not any(target.resolve().is_relative_to(a.resolve()) for a in allowed):
        raise ValueError("the path is outside the provider's allowed.paths")
    if provider.kind == "directory":
        if "/" in key or key in ("", ".", ".."):
            raise ValueError("the key must be a file name in the directory")
        try:
            return target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None
    if path not in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(getattr(exc, "strerror", None) or str(exc)) from None
        entries, problems = parse_properties(text, source=path)
        if problems:
            raise ValueError(str(problems[0]))
        files[path] = {entry.key: entry.value for entry in entries}
    if key not in files[path]:
        raise ValueError(f"{path} has no key {key!r}")
    return files[path][key]
