"""The `csf` fsspec protocol: pandas, pyarrow and every fsspec user read through a cached store.

Installing this distribution registers `csf` in fsspec's `fsspec.specs` entry-point group, so
`fsspec.filesystem("csf", config="cache.toml")` and `pd.read_parquet("csf://data/x.parquet",
storage_options={"config": "cache.toml"})` work without an import.
"""

from __future__ import annotations

from ._filesystem import CachedStoreFileSystem

__all__ = ["CachedStoreFileSystem"]
