"""`from cached_stores_factory.stores.redis_store import RedisStore`

Found by name in the plugin registry, so the core imports no plugin.
"""

from typing import TYPE_CHECKING

from .._reexport import resolver

if TYPE_CHECKING:  # for type checkers only: at run time the core imports no plugin
    from cached_stores_factory_redis import RedisStore

__getattr__ = resolver(__name__, {"RedisStore": ("store", "redis")})
__all__ = ["RedisStore"]
