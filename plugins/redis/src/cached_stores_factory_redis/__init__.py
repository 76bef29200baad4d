"""cached-stores-factory plugin 'redis': a store in Redis.

redis-py is imported when a RedisStore is built, never when this plugin is loaded.
"""

from __future__ import annotations

import cached_stores_factory
from cached_stores_factory.hookspecs import Register

from ._store import DEFAULT_MAX_VALUE_BYTES, RedisStore, connect

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "RedisStore", "connect"]
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@cached_stores_factory.hookimpl
def csf_register_stores(register: Register) -> None:
    register("redis", RedisStore)
