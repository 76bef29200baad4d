"""`from cached_stores_factory.caches.LRU_cache import LRUCache`

Found by name in the plugin registry, so the core imports no plugin.
"""

from typing import TYPE_CHECKING

from .._reexport import resolver

if TYPE_CHECKING:  # for type checkers only: at run time the core imports no plugin
    from cached_stores_factory_policies import LRUCache

__getattr__ = resolver(__name__, {"LRUCache": ("policy", "lru")})
__all__ = ["LRUCache"]
