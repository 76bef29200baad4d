"""Plugin discovery and the component registry.

Plugins are modules named by entry points in the `cached_stores_factory` group.  They are
imported lazily, on the first lookup, and only once.  A plugin that fails to import or to
register is recorded, not raised: only a lookup of a name it would have provided fails, with
the original exception chained.  `CSF_DISABLE_PLUGINS=a,b` skips plugins by entry-point name.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points, version
from types import ModuleType
from typing import Any, Literal

import attrs
import pluggy

from . import _builtins, hookspecs
from .errors import DuplicatePluginError, PluginLoadError, PluginNotFoundError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Component",
    "Kind",
    "PluginRecord",
    "PluginRegistry",
    "registry",
]

ENTRY_POINT_GROUP = "cached_stores_factory"
CORE_DISTRIBUTION = "cached-stores-factory-core"
BUILTINS = "builtins"

Kind = Literal["store", "policy", "serializer"]
KINDS: tuple[Kind, ...] = ("store", "policy", "serializer")
_HOOKS: dict[Kind, str] = {
    "store": "csf_register_stores",
    "policy": "csf_register_policies",
    "serializer": "csf_register_serializers",
}

# First-party names that ship outside the core: (kind, name) -> (entry-point name, pip extra).
# An empty extra means the plain `pip install cached-stores-factory` brings it.
FIRST_PARTY: dict[tuple[Kind, str], tuple[str, str]] = {
    ("store", "tempfile"): ("tempfile", ""),
    ("store", "redis"): ("redis", "redis"),
    ("store", "s3"): ("s3", "s3"),
    ("policy", "ttl"): ("policies", ""),
    ("policy", "fifo"): ("policies", ""),
    ("policy", "lru"): ("policies", ""),
}


def install_hint(kind: Kind, name: str) -> str | None:
    """The pip command that installs a first-party component, or None for other names."""
    if (kind, name) not in FIRST_PARTY:
        return None
    extra = FIRST_PARTY[kind, name][1]
    return (
        f'pip install "cached-stores-factory[{extra}]"'
        if extra
        else "pip install cached-stores-factory"
    )


@attrs.frozen
class Component:
    """One registered store, policy or serializer factory, and where it came from."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None
    version: str | None


@attrs.frozen
class PluginRecord:
    """One plugin module: loaded, broken (with its error) or disabled."""

    name: str
    distribution: str | None
    version: str | None
    error: BaseException | None = None
    disabled: bool = False


def _disabled_from_env(environ: Mapping[str, str]) -> frozenset[str]:
    raw = environ.get("CSF_DISABLE_PLUGINS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


class PluginRegistry:
    """Loads plugins once and answers lookups by (kind, name)."""

    def __init__(
        self,
        entry_point_source: Callable[[], Iterable[EntryPoint]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._entry_point_source = entry_point_source or (
            lambda: entry_points(group=ENTRY_POINT_GROUP)
        )
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._loaded = False
        self._components: dict[tuple[Kind, str], list[Component]] = {}
        self._plugins: dict[str, PluginRecord] = {}

    # -- loading --------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
        modules: list[tuple[ModuleType, PluginRecord]] = [
            (_builtins, PluginRecord(BUILTINS, CORE_DISTRIBUTION, _version(CORE_DISTRIBUTION)))
        ]
        disabled = _disabled_from_env(self._environ)
        seen: set[tuple[str, str]] = set()
        for entry_point in self._entry_point_source():
            if (entry_point.name, entry_point.value) in seen:
                continue  # the same distribution visible twice on sys.path
            seen.add((entry_point.name, entry_point.value))
            dist = entry_point.dist
            record = PluginRecord(
                entry_point.name,
                dist.name if dist else None,
                dist.version if dist else None,
                disabled=entry_point.name in disabled,
            )
            if record.disabled:
                self._plugins[record.name] = record
                continue
            try:
                module = entry_point.load()
            except Exception as exc:
                self._plugins[record.name] = attrs.evolve(record, error=exc)
                continue
            modules.append((module, record))

        for module, record in modules:
            try:
                manager.register(module, name=record.name)
                manager.check_pending()
            except Exception as exc:
                if manager.is_registered(module):
                    manager.unregister(module)
                self._plugins[record.name] = attrs.evolve(record, error=exc)
                continue
            self._plugins[record.name] = record

        for kind, hook_name in _HOOKS.items():
            hook_caller: pluggy.HookCaller = getattr(manager.hook, hook_name)
            for impl in hook_caller.get_hookimpls():
                self._collect(kind, impl)

    def _collect(self, kind: Kind, impl: pluggy.HookImpl) -> None:
        record = self._plugins[impl.plugin_name]
        if record.error is not None:
            return
        found: list[Component] = []

        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"a {kind} name must be a non-empty str, not {name!r}")
            if not callable(factory):
                raise TypeError(f"the factory for {kind} {name!r} is not callable")
            found.append(
                Component(kind, name, factory, record.name, record.distribution, record.version)
            )

        try:
            impl.function(register=register)
        except Exception as exc:
            self._plugins[record.name] = attrs.evolve(record, error=exc)
            for key, components in self._components.items():
                self._components[key] = [c for c in components if c.plugin != record.name]
            return
        for component in found:
            self._components.setdefault((kind, component.name), []).append(component)

    # -- lookups --------------------------------------------------------------------------

    def get(self, kind: Kind, name: str) -> Component:
        """The component registered as `name`, or an error that says what to do instead."""
        self._ensure_loaded()
        candidates = self._components.get((kind, name), [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            sources = " and ".join(
                f"plugin {c.plugin!r} of distribution {c.distribution or '?'}" for c in candidates
            )
            raise DuplicatePluginError(
                f"{kind} name {name!r} is registered twice, by {sources}; uninstall one of them "
                f"or block one plugin with CSF_DISABLE_PLUGINS"
            )
        raise self._not_found(kind, name)

    def _not_found(self, kind: Kind, name: str) -> Exception:
        plugin_name = FIRST_PARTY.get((kind, name), (name, ""))[0]
        record = self._plugins.get(plugin_name)
        if record is not None and record.disabled:
            return PluginNotFoundError(
                f"{kind} {name!r} comes from plugin {plugin_name!r}, which "
                f"CSF_DISABLE_PLUGINS blocks"
            )
        if record is not None and record.error is not None:
            error = PluginLoadError(
                f"{kind} {name!r} comes from plugin {plugin_name!r} "
                f"({record.distribution or 'unknown distribution'}), which failed to load: "
                f"{type(record.error).__name__}: {record.error}"
            )
            error.__cause__ = record.error
            return error
        installed = self.names(kind)
        message = f"unknown {kind} {name!r}; installed {kind}s: {', '.join(installed) or 'none'}"
        close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
        if close:
            message += f"; did you mean {close[0]!r}?"
        hint = install_hint(kind, name)
        if hint:
            message += f". {kind.capitalize()} {name!r} is first-party: {hint}"
        broken = [r.name for r in self._plugins.values() if r.error is not None]
        if broken:
            message += f". Plugins that failed to load: {', '.join(sorted(broken))} (csf plugins)"
        return PluginNotFoundError(message)

    def names(self, kind: Kind) -> list[str]:
        """Installed names of one kind, sorted."""
        self._ensure_loaded()
        return sorted(name for (k, name), found in self._components.items() if k == kind and found)

    def components(self) -> list[Component]:
        self._ensure_loaded()
        return sorted(
            (c for found in self._components.values() for c in found),
            key=lambda c: (KINDS.index(c.kind), c.name, c.plugin),
        )

    def plugins(self) -> list[PluginRecord]:
        self._ensure_loaded()
        return sorted(self._plugins.values(), key=lambda r: (r.name != BUILTINS, r.name))

    def create(self, kind: Kind, name: str, **kwargs: Any) -> Any:
        return self.get(kind, name).factory(**kwargs)


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except Exception:
        return None


registry = PluginRegistry()
"""The process-wide registry that the factory and the CLI use."""
