"""A third-party plugin: one store, one policy and one serializer, registered by name.

After `pip install csf-example-plugin`, a config can say `store = "sqlite"`,
`name = "ttl-by-prefix"` or `serializer = "json-gzip"`.
"""

from __future__ import annotations

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register

from .policy import TTLByPrefix
from .serializer import GzipJsonSerializer
from .store import SQLiteStore

__all__ = ["GzipJsonSerializer", "SQLiteStore", "TTLByPrefix"]
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("sqlite", SQLiteStore)


@hookimpl
def csf_register_policies(register: Register) -> None:
    register("ttl-by-prefix", TTLByPrefix)


@hookimpl
def csf_register_serializers(register: Register) -> None:
    register("json-gzip", GzipJsonSerializer)
