"""`make demo`: what cached-stores-factory does, on nothing but this machine."""

from __future__ import annotations

from cached_stores_factory import CachedStoreFactory, MemoryStore
from cached_stores_factory.cli import main as csf


def run() -> int:
    print("Installed plugins (csf plugins):")
    csf(["plugins"])
    remote = MemoryStore()
    remote.put("path/my.file", b"hello from the remote")
    store = CachedStoreFactory(MemoryStore(), remote).build()
    for attempt in ("first read", "second read"):
        with store.open("path/my.file", "rb") as fh:
            print(f"{attempt}: {fh.read()!r} stats={store.stats()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
