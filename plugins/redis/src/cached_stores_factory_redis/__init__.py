"""cached-stores-factory plugin 'redis': a store in Redis.

redis-py is imported when a RedisStore is built, the store's module when it is first used;
neither when this plugin is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._lease import RedisLease
    from ._store import DEFAULT_MAX_VALUE_BYTES, RedisStore, connect

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "RedisLease", "RedisStore", "connect"]
__getattr__ = lazy_exports(__name__, {**dict.fromkeys(__all__, "._store"), "RedisLease": "._lease"})
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("redis", "cached_stores_factory_redis:RedisStore")
