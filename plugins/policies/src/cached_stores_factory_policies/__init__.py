"""Cache policies for cached-stores-factory: TTL, FIFO and LRU (the `policies` plugin).

TTL is stateless (an entry's age is its local store's timestamp).  FIFO and LRU keep their
order in the local store's state directory when it has one, so bounds last across restarts
and hold across processes; see docs/policies.md.
"""

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register

from ._bounded import FIFOCache, LRUCache
from ._ttl import TTLCache

__all__ = ["FIFOCache", "LRUCache", "TTLCache"]
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_policies(register: Register) -> None:
    register("ttl", TTLCache)
    register("fifo", FIFOCache)
    register("lru", LRUCache)
