"""A third-party plugin: one store, one policy and one serializer, registered by name.

After `pip install csf-example-plugin`, a config can say `store = "sqlite"`,
`name = "ttl-by-prefix"` or `serializer = "json-gzip"`.  Each component's module is imported
when that component is first used, so installing the plugin costs other users nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from .policy import TTLByPrefix
    from .serializer import GzipJsonSerializer
    from .store import SQLiteStore

__all__ = ["GzipJsonSerializer", "SQLiteStore", "TTLByPrefix"]
__getattr__ = lazy_exports(
    __name__,
    {"GzipJsonSerializer": ".serializer", "SQLiteStore": ".store", "TTLByPrefix": ".policy"},
)
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("sqlite", "csf_example_plugin:SQLiteStore")


@hookimpl
def csf_register_policies(register: Register) -> None:
    register("ttl-by-prefix", "csf_example_plugin:TTLByPrefix")


@hookimpl
def csf_register_serializers(register: Register) -> None:
    register("json-gzip", "csf_example_plugin:GzipJsonSerializer")
