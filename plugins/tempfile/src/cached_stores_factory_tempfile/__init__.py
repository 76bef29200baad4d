"""cached-stores-factory plugin 'tempfile': a store of files in a private directory.

The store's module is imported when a config or a caller first uses it, not when the plugin
loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._store import TempfileStore

__all__ = ["TempfileStore"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "._store"))
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("tempfile", "cached_stores_factory_tempfile:TempfileStore")
