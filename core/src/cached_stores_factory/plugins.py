"""Plugin discovery and the component registry.

Plugins are modules named by entry points in the `cached_stores_factory` group.  On the first
lookup, once, each is imported, checked against the plugin API and registered with one pluggy
`PluginManager`, and each hook is called once through `pm.hook`, so `tryfirst`, `trylast` and
hook wrappers work as pluggy documents them.  A plugin that fails to import, targets another
plugin API or whose hook function raises is recorded, not raised: the other plugins' hook
functions still run once, and only a lookup of a name it provides fails, with the cause
chained.  A hook function whose name no hook specification has (a misspelt hook) is skipped
and named in the plugin's `problems`; its other hooks still run.  Two plugins registering one
name lose that name only.
`CSF_DISABLE_PLUGINS=a,b` skips plugins by entry-point name.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import Distribution, EntryPoint, entry_points
from types import ModuleType
from typing import Any, NamedTuple

import pluggy

from . import _builtins, hookspecs
from ._reexport import FIRST_PARTY, Kind, install_hint
from ._version import __version__, check_plugin_api
from .errors import DuplicatePluginError, PluginLoadError, PluginNotFoundError
from .events import dispatcher

__all__ = ["ENTRY_POINT_GROUP", "Component", "Kind", "PluginRecord", "PluginRegistry", "registry"]

ENTRY_POINT_GROUP = "cached_stores_factory"
CORE_DISTRIBUTION = "cached-stores-factory-core"
BUILTINS = "builtins"
HOOKS: dict[Kind, str] = {  # in the order they are called and listed
    "store": "csf_register_stores",
    "policy": "csf_register_policies",
    "serializer": "csf_register_serializers",
    "listener": "csf_register_listeners",
}


HOOK_NAMES = frozenset(name for name in vars(hookspecs) if name.startswith("csf_"))


def _unknown_hook(name: str) -> str:
    """What a plugin's record says of a hook function whose name no hook specification has."""
    import difflib  # only a misspelt hook needs it

    close = difflib.get_close_matches(name, sorted(HOOK_NAMES), n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown hook {name!r}{guess} is never called; the plugin's other hooks are"


class PluginRecord:
    """One plugin module: loaded, broken (`error`) or disabled.

    Its distribution's name and version are read when first asked for: each read parses the
    distribution's METADATA, which costs a cold start more than the entry-point scan itself.
    """

    def __init__(self, name: str, dist: Distribution | None, *, disabled: bool = False) -> None:
        self.name, self._dist, self.disabled = name, dist, disabled
        self.error: BaseException | None = None
        self.problems: list[str] = []  # what was skipped (a misspelt hook); the rest works

    @functools.cached_property
    def distribution(self) -> str | None:
        return self._dist.name if self._dist else None

    @functools.cached_property
    def version(self) -> str | None:
        return self._dist.version if self._dist else None


class Component(NamedTuple):
    """One registered store, policy or serializer factory, and the plugin it came from."""

    kind: Kind
    name: str
    target: Callable[..., Any] | str  # a factory, or "module:attribute" imported on first use
    source: PluginRecord

    @property
    def plugin(self) -> str:
        return self.source.name

    @property
    def distribution(self) -> str | None:
        return self.source.distribution

    @property
    def version(self) -> str | None:
        return self.source.version

    @property
    def factory(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        module, _, attribute = self.target.partition(":")
        try:
            factory: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
        except Exception as exc:
            raise PluginLoadError(
                f"{self.kind} {self.name!r} of plugin {self.plugin!r} "
                f"({self.distribution or 'unknown distribution'}) cannot import "
                f"{self.target}: {type(exc).__name__}: {exc}"
            ) from exc
        return factory


class PluginRegistry:
    """Loads plugins once and answers lookups by (kind, name)."""

    def __init__(
        self,
        entry_point_source: Callable[[], Iterable[EntryPoint]] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        start_listeners: bool = False,
    ) -> None:
        self._entry_point_source = entry_point_source or (
            lambda: entry_points(group=ENTRY_POINT_GROUP)
        )
        self._environ = os.environ if environ is None else environ
        self._start_listeners = start_listeners
        self._lock = threading.Lock()
        self._loaded = False
        self._components: dict[tuple[Kind, str], list[Component]] = {}
        # By pluggy name, "entry-point name = module": unique, unlike entry-point names.
        self._plugins: dict[str, PluginRecord] = {}
        self._registered: list[tuple[PluginRecord, str, Callable[..., Any] | str]] = []

    # -- loading --------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
                if self._start_listeners:
                    self._listen()

    def _listen(self) -> None:
        """Make each registered listener and subscribe it to the process's events.

        One whose factory raises is named in its plugin's `problems`; the others still start.
        """
        for (kind, name), found in sorted(self._components.items()):
            if kind != "listener" or len(found) != 1:
                continue  # a name registered twice is refused at lookup, as for every kind
            try:
                dispatcher.subscribe(found[0].factory())
            except Exception as exc:
                found[0].source.problems.append(
                    f"listener {name!r} did not start: {type(exc).__name__}: {exc}"
                )

    def _load(self) -> None:
        manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        manager.add_hookspecs(hookspecs)
        core = self._plugins[BUILTINS] = PluginRecord(BUILTINS, None)
        core.distribution, core.version = CORE_DISTRIBUTION, __version__
        self._register(manager, BUILTINS, _builtins)
        disabled = {n.strip() for n in self._environ.get("CSF_DISABLE_PLUGINS", "").split(",")}
        for entry_point in self._entry_point_source():
            key = f"{entry_point.name} = {entry_point.value}"
            if key in self._plugins:
                continue  # the same distribution, visible twice on sys.path
            record = self._plugins[key] = PluginRecord(
                entry_point.name, entry_point.dist, disabled=entry_point.name in disabled
            )
            if record.disabled:
                continue
            try:
                module = entry_point.load()
                check_plugin_api(module)
            except Exception as exc:
                record.error = exc
            else:
                self._register(manager, key, module)
        found: list[Component] = []
        for kind, hook in HOOKS.items():
            self._registered.clear()
            getattr(manager.hook, hook)(register=None)  # each plugin gets its own `register`
            found += [Component(kind, name, f, record) for record, name, f in self._registered]
            for key, record in self._plugins.items():  # a failed plugin's later hooks don't run
                if record.error is not None:
                    manager.unregister(name=key)  # pluggy skips a name it does not hold
        for component in found:  # a failed plugin loses every name it registered
            if component.source.error is None:
                self._components.setdefault((component.kind, component.name), []).append(component)

    def _register(self, manager: pluggy.PluginManager, key: str, module: object) -> None:
        """Register the module's hook functions with pluggy as `key`, each adapted.

        Dunder names are never hooks.  Skipping them, and registering the adapted functions as
        a bare module, spares pluggy most of its static lookups, which a cold start feels.
        """
        record = self._plugins[key]
        hooks = ModuleType(key)
        for attribute in (name for name in dir(module) if not name.startswith("__")):
            options = manager.parse_hookimpl_opts(module, attribute)
            if options is None:
                continue
            if attribute not in HOOK_NAMES:  # a misspelt hook costs itself only
                record.problems.append(_unknown_hook(attribute))
                continue
            wrapper = bool(options.get("wrapper") or options.get("hookwrapper"))
            setattr(hooks, attribute, self._adapt(record, getattr(module, attribute), wrapper))
        try:
            manager.register(hooks, name=key)
            manager.check_pending()
        except Exception as exc:
            manager.unregister(name=key)
            record.error = exc

    def _adapt(
        self, record: PluginRecord, function: Callable[..., Any], wrapper: bool
    ) -> Callable[..., Any]:
        """`function` as pluggy calls it, with its hookimpl options (`functools.wraps` copies
        them): it gets a `register` that credits `record`, and an exception it raises fails
        that plugin instead of the whole hook call, so every other hook function runs once.
        A wrapper yields once, as pluggy requires, even if the plugin's wrapper raises, yields
        never or yields twice."""

        def register(name: str, factory: Callable[..., Any] | str) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"a component name must be a non-empty str, not {name!r}")
            if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
                raise TypeError(f"the factory for {name!r} is not callable nor 'module:attribute'")
            self._registered.append((record, name, factory))

        # pluggy passes the arguments a hook function names, by keyword those it gives a
        # default (`register=None`); the hooks have one argument, `register`.
        def call(args: tuple[object, ...], kwargs: dict[str, object]) -> Any:
            return function(*[register] * len(args), **dict.fromkeys(kwargs, register))

        def adapted(*args: object, **kwargs: object) -> Any:
            try:
                return call(args, kwargs)
            except Exception as exc:
                record.error = exc
                return None

        def adapted_wrapper(*args: object, **kwargs: object) -> Any:
            try:
                teardown = call(args, kwargs)
                next(teardown)  # its code up to its `yield`
            except StopIteration:
                record.error = RuntimeError(f"hook wrapper {function.__qualname__} did not yield")
                return (yield)
            except Exception as exc:
                record.error = exc
                return (yield)
            result = yield
            try:
                teardown.send(result)  # its code after its `yield`
            except StopIteration as stop:
                return stop.value
            except Exception as exc:
                record.error = exc
            else:
                record.error = RuntimeError(f"hook wrapper {function.__qualname__} yielded twice")
            return result

        return functools.wraps(function)(adapted_wrapper if wrapper else adapted)

    # -- lookups --------------------------------------------------------------------------

    def get(self, kind: Kind, name: str) -> Component:
        """The component registered as `name`, or an error that says what to do instead."""
        self._ensure_loaded()
        candidates = self._components.get((kind, name), [])
        if len(candidates) == 1:  # a "module:attribute" is imported (or fails) here, once
            candidates[0] = candidates[0]._replace(target=candidates[0].factory)
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
        plugin = FIRST_PARTY.get((kind, name), (name, ""))[0]
        where = f"{kind} {name!r} comes from plugin {plugin!r}"
        for record in (r for r in self._plugins.values() if r.name == plugin):
            if record.disabled:
                return PluginNotFoundError(f"{where}, which CSF_DISABLE_PLUGINS blocks")
            if record.error is not None:
                error = PluginLoadError(
                    f"{where} ({record.distribution or 'unknown distribution'}), which failed "
                    f"to load: {type(record.error).__name__}: {record.error}"
                )
                error.__cause__ = record.error
                return error
        import difflib  # only an unknown name needs it

        installed = self.names(kind)
        plural = "policies" if kind == "policy" else f"{kind}s"
        message = f"unknown {kind} {name!r}; installed {plural}: {', '.join(installed) or 'none'}"
        by_folded = {n.casefold(): n for n in installed}
        if close := difflib.get_close_matches(name.casefold(), by_folded, n=1, cutoff=0.5):
            message += f"; did you mean {by_folded[close[0]]!r}?"
        if hint := install_hint(kind, name):
            message += f". {kind.capitalize()} {name!r} is first-party: {hint}"
        if broken := sorted(r.name for r in self._plugins.values() if r.error is not None):
            message += f". Plugins that failed to load: {', '.join(broken)} (csf plugins)"
        for record in self._plugins.values():
            if record.problems:
                message += f". Plugin {record.name!r}: {'; '.join(record.problems)}"
        return PluginNotFoundError(message)

    def names(self, kind: Kind) -> list[str]:
        """Installed names of one kind, sorted."""
        self._ensure_loaded()
        return sorted(name for (k, name), found in self._components.items() if k == kind and found)

    def components(self) -> list[Component]:
        self._ensure_loaded()
        return sorted(
            (c for found in self._components.values() for c in found),
            key=lambda c: (list(HOOKS).index(c.kind), c.name, c.plugin),
        )

    def plugins(self) -> list[PluginRecord]:
        self._ensure_loaded()
        return sorted(self._plugins.values(), key=lambda r: (r.name != BUILTINS, r.name))

    def create(self, kind: Kind, name: str, **kwargs: Any) -> Any:
        return self.get(kind, name).factory(**kwargs)


registry = PluginRegistry(start_listeners=True)
"""The process-wide registry that the factory and the CLI use; it starts plugins' listeners."""
