"""cached-stores-factory plugin 'fsspec': the `csf` fsspec protocol, and any fsspec location
as a store.

Installing this distribution registers `csf` in fsspec's `fsspec.specs` entry-point group, so
`fsspec.filesystem("csf", config="cache.toml")` and `pd.read_parquet("csf://data/x.parquet",
storage_options={"config": "cache.toml"})` work without an import.  It also registers the
store `fsspec` (`url = "gs://bucket/prefix"`, `"az://..."`, `"https://..."`, ...).  fsspec and
its implementations are imported when a store or a filesystem is built, never when the plugin
loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._filesystem import CachedStoreFileSystem
    from ._store import FsspecStore

__all__ = ["CachedStoreFileSystem", "FsspecStore"]
__getattr__ = lazy_exports(
    __name__, {"CachedStoreFileSystem": "._filesystem", "FsspecStore": "._store"}
)
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("fsspec", "cached_stores_factory_fsspec:FsspecStore")
