"""The plugin hooks.  A plugin implements any of them with `@cached_stores_factory.hookimpl`.

Each hook receives `register(name, factory)`; `factory(**kwargs)` is later called with the
config section's remaining keys.  A factory given as a "module:attribute" string is imported
when the name is first used.  The core owns the registry; plugins only call `register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pluggy

PROJECT_NAME = "cached_stores_factory"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    def __call__(self, name: str, factory: Callable[..., Any] | str) -> None: ...


@hookspec
def csf_register_stores(register: Register) -> None:
    """Register store factories: `register("s3", S3Store)`."""


@hookspec
def csf_register_policies(register: Register) -> None:
    """Register cache-policy factories: `register("lru", LRUCache)`."""


@hookspec
def csf_register_serializers(register: Register) -> None:
    """Register serializer factories: `register("json", JsonSerializer)`."""


@hookspec
def csf_register_listeners(register: Register) -> None:
    """Register event listeners: `register("otel", OTelListener)`.

    Unlike the other kinds, a listener is made at once: when the process-wide registry first
    loads (reading a config does), each factory is called with no arguments, under the
    registry's lock (so it must not look up components), and what it returns is subscribed
    to `cached_stores_factory.events.dispatcher`: it is called with every Event of every
    cached store in the process.  See `cached_stores_factory.events` for what runs where.
    """


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) for a package (a plugin's hook module, or the core's
    own): `names` maps each public name to the submodule that defines it, imported when the
    name is first used."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__
