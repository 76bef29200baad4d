"""Cache policies for cached-stores-factory: TTL, FIFO and LRU (the `policies` plugin).

TTL is stateless (an entry's age is its local store's timestamp).  FIFO and LRU keep their
order in the local store's state directory when it has one, so bounds last across restarts
and hold across processes; see docs/policies.md.  Each policy's module is imported when it is
first used, not when the plugin loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._bounded import FIFOCache, LRUCache
    from ._ttl import TTLCache

__all__ = ["FIFOCache", "LRUCache", "TTLCache"]
__getattr__ = lazy_exports(
    __name__, {"FIFOCache": "._bounded", "LRUCache": "._bounded", "TTLCache": "._ttl"}
)
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_policies(register: Register) -> None:
    register("ttl", "cached_stores_factory_policies:TTLCache")
    register("fifo", "cached_stores_factory_policies:FIFOCache")
    register("lru", "cached_stores_factory_policies:LRUCache")
