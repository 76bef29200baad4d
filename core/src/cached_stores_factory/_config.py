"""Declarative configuration: every part named, resolved through the plugin registry."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._types import argument_hints, convert, type_problem, validator_problem
from .errors import ConfigError, PluginError, RemoteError, StoreError, redact
from .plugins import Kind, PluginRegistry

__all__ = ["ComponentSpec", "Recipe", "load_config", "parse", "resolve"]

SECTIONS: dict[str, tuple[Kind, str]] = {
    "local": ("store", "store"),
    "remote": ("store", "store"),
    "policy": ("policy", "name"),
    "serializer": ("serializer", "name"),
}
REQUIRED_SECTIONS = ("local", "remote")
SETTINGS: dict[str, type] = {"availability": bool}
"""Top-level keys that are the cached store's own settings, with their types."""
_ENV_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")
_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|key", re.IGNORECASE)

ComponentSpec = tuple[Kind, str, dict[str, Any]]


def load_config(source: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """Read a TOML file or take a mapping; return (where it came from, the mapping)."""
    if isinstance(source, Mapping):
        return "config", dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from None
    return str(path), parse_toml(text, str(path))


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The mapping a TOML text holds; a syntax error names `source` and the line."""
    import tomllib  # only TOML needs it: a mapping source skips the import

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def _substitute(text: str, where: str, environ: Mapping[str, str]) -> str:
    """Replace ${VAR} and ${VAR:-default} by the environment's value; '$$' stands for '$'."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name, default = match.group(2), match.group(3)
        if name in environ and (default is None or environ[name]):
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name!r} is not set")

    if "${" in _ENV_REF.sub("", text):
        raise ConfigError(
            f"{where}: '${{' without a closing '}}' or a valid variable name; "
            "write '$$' for a literal '$'"
        )
    return _ENV_REF.sub(value, text)


def _expand(value: Any, where: str, environ: Mapping[str, str], hint: Any = Any) -> Any:
    """Fill environment references in strings, inside lists and tables too.

    A string that is exactly one reference takes the argument's annotated type (int, float,
    bool), so `depth = "${DEPTH}"` passes an int.
    """
    if isinstance(value, str):
        text = _substitute(value, where, environ)
        if _ENV_REF.fullmatch(value) and not value.startswith("$$"):
            return convert(text, hint, where)
        return text
    if isinstance(value, list):
        return [_expand(item, where, environ) for item in value]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", environ) for k, v in value.items()}
    return value


def _section(source: str, config: Mapping[str, Any], section: str) -> ComponentSpec | None:
    kind, name_key = SECTIONS[section]
    raw = config.get(section)
    if raw is None:
        if section in REQUIRED_SECTIONS:
            raise ConfigError(f"{source}: missing section [{section}]")
        return None
    if section == "serializer" and isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [{section}] must be a table, not {type(raw).__name__}")
    arguments = dict(raw)
    name = arguments.pop(name_key, None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f'{source}: [{section}] needs {name_key} = "<a registered {kind} name>"')
    return kind, name, arguments


def _check_arguments(where: str, factory: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: let the call itself complain
    params = signature.parameters.values()
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = {
        p.name: p
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_")
    }
    problems = []
    unexpected = [n for n in arguments if n not in named]
    if unexpected and not accepts_any:
        problems.append(
            f"unexpected argument {', '.join(repr(u) for u in unexpected)} "
            f"(accepted: {', '.join(named) or 'none'})"
        )
    missing = [n for n, p in named.items() if p.default is p.empty and n not in arguments]
    if missing:
        problems.append(f"missing argument {', '.join(repr(m) for m in missing)}")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")


class Recipe(NamedTuple):
    """A component a config names, with its checked arguments: `make()` constructs it.

    A store is made only when the factory builds, so reading a config opens no file and no
    connection.  The repr shows the place, never the arguments (they may hold secrets).
    """

    where: str
    factory: Callable[..., Any]
    arguments: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Recipe(where={self.where!r})"

    def make(self) -> Any:
        try:
            return self.factory(**self.arguments)
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            secrets = [str(v) for k, v in self.arguments.items() if _SECRET_NAME.search(k)]
            raise ConfigError(f"{self.where}: {redact(str(exc), secrets)}") from None
        except StoreError as exc:
            if type(exc) not in (StoreError, RemoteError):
                raise
            # A store that cannot start (its directory, its cluster): the same error, placed.
            raise type(exc)(f"{self.where}: {exc}") from None


def _check_types(
    where: str,
    factory: Callable[..., Any],
    hints: Mapping[str, Any],
    arguments: Mapping[str, Any],
) -> None:
    for name, value in arguments.items():
        problem = (
            type_problem(value, hints[name], secret=bool(_SECRET_NAME.search(name)))
            if name in hints
            else None
        ) or validator_problem(factory, name, value)
        if problem:
            raise ConfigError(f"{where} argument {name!r}: {problem}")


def resolve(source: str, registry: PluginRegistry, spec: ComponentSpec, section: str) -> Recipe:
    """Find one component and check its arguments, with no I/O; every failure names its place."""
    kind, name, arguments = spec
    where = f"{source}: [{section}] {kind} {name!r}"
    try:
        component = registry.get(kind, name)
    except PluginError as exc:
        raise type(exc)(f"{source}: [{section}]: {exc}") from exc.__cause__
    _check_arguments(where, component.factory, arguments)
    hints = argument_hints(component.factory)
    arguments = {
        k: _expand(v, f"{where} argument {k!r}", os.environ, hints.get(k, Any))
        for k, v in arguments.items()
    }
    _check_types(where, component.factory, hints, arguments)
    return Recipe(where, component.factory, arguments)


def parse(source: str, config: Mapping[str, Any]) -> dict[str, ComponentSpec | None]:
    """Check the top level and split it into component specs, one per section."""
    unknown = sorted(set(config) - set(SECTIONS) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{source}: unexpected top-level key {', '.join(repr(u) for u in unknown)}; "
            f"expected: {', '.join([*SECTIONS, *SETTINGS])}"
        )
    for name, kind in SETTINGS.items():
        if name in config and not isinstance(config[name], kind):
            raise ConfigError(
                f"{source}: top-level key {name!r} must be a {kind.__name__}, "
                f"not {type(config[name]).__name__}"
            )
    return {section: _section(source, config, section) for section in SECTIONS}
