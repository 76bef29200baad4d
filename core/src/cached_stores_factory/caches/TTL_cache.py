"""`from cached_stores_factory.caches.TTL_cache import FIFOCache, TTLCache`

Found by name in the plugin registry, so the core imports no plugin.
"""

from typing import TYPE_CHECKING

from .._reexport import resolver

if TYPE_CHECKING:  # for type checkers only: at run time the core imports no plugin
    from cached_stores_factory_policies import FIFOCache, TTLCache

__getattr__ = resolver(__name__, {"FIFOCache": ("policy", "fifo"), "TTLCache": ("policy", "ttl")})
__all__ = ["FIFOCache", "TTLCache"]
