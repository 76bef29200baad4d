"""cached-stores-factory plugin 'tempfile': a store of files in a private directory."""

from __future__ import annotations

import cached_stores_factory
from cached_stores_factory.hookspecs import Register

from ._store import TempfileStore

__all__ = ["TempfileStore"]
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@cached_stores_factory.hookimpl
def csf_register_stores(register: Register) -> None:
    register("tempfile", TempfileStore)
