"""`from cached_stores_factory.stores.S3_store import S3Store`

Found by name in the plugin registry, so the core imports no plugin.
"""

from typing import TYPE_CHECKING

from .._reexport import resolver

if TYPE_CHECKING:  # for type checkers only: at run time the core imports no plugin
    from cached_stores_factory_s3 import S3Store

__getattr__ = resolver(__name__, {"S3Store": ("store", "s3")})
__all__ = ["S3Store"]
