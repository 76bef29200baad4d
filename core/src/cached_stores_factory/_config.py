"""Declarative configuration: every part named, resolved through the plugin registry."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, PluginError, redact
from .plugins import Kind, PluginRegistry

__all__ = ["ComponentSpec", "load_config", "resolve"]

SECTIONS: dict[str, tuple[Kind, str]] = {
    "local": ("store", "store"),
    "remote": ("store", "store"),
    "policy": ("policy", "name"),
    "serializer": ("serializer", "name"),
}
REQUIRED_SECTIONS = ("local", "remote")
_ENV_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|key", re.IGNORECASE)

ComponentSpec = tuple[Kind, str, dict[str, Any]]


def load_config(source: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """Read a TOML file or take a mapping; return (where it came from, the mapping)."""
    if isinstance(source, Mapping):
        return "config", dict(source)
    import tomllib  # only a file needs it: a mapping source skips the import

    path = Path(source)
    try:
        with path.open("rb") as fh:
            return str(path), tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None


def _expand(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    """Replace ${VAR} in strings by the environment's value; '$$' stands for '$'."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) == "$":
                return "$"
            name = match.group(2)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name!r} is not set")
            return environ[name]

        return _ENV_REF.sub(substitute, value)
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


def resolve(source: str, registry: PluginRegistry, spec: ComponentSpec, section: str) -> Any:
    """Build one component, turning every failure into a ConfigError that names its place."""
    kind, name, arguments = spec
    where = f"{source}: [{section}] {kind} {name!r}"
    try:
        component = registry.get(kind, name)
    except PluginError as exc:
        raise type(exc)(f"{source}: [{section}]: {exc}") from exc.__cause__
    arguments = {k: _expand(v, f"{where} argument {k!r}", os.environ) for k, v in arguments.items()}
    _check_arguments(where, component.factory, arguments)
    try:
        return component.factory(**arguments)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        secrets = [str(v) for k, v in arguments.items() if _SECRET_NAME.search(k)]
        raise ConfigError(f"{where}: {redact(str(exc), secrets)}") from None


def parse(source: str, config: Mapping[str, Any]) -> dict[str, ComponentSpec | None]:
    """Check the top level and split it into component specs, one per section."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{source}: unexpected top-level key {', '.join(repr(u) for u in unknown)}; "
            f"expected: {', '.join(SECTIONS)}"
        )
    return {section: _section(source, config, section) for section in SECTIONS}
