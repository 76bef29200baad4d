"""`from cached_stores_factory.stores.tempfile_store import TempfileStore`

Found by name in the plugin registry, so the core imports no plugin.
"""

from typing import TYPE_CHECKING

from .._reexport import resolver

if TYPE_CHECKING:  # for type checkers only: at run time the core imports no plugin
    from cached_stores_factory_tempfile import TempfileStore

__getattr__ = resolver(__name__, {"TempfileStore": ("store", "tempfile")})
__all__ = ["TempfileStore"]
