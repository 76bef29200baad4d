"""The built-in components, registered through the same hooks as every plugin."""

from __future__ import annotations

from ._serializer import BytesSerializer
from .hookspecs import Register, hookimpl
from .stores.memory_store import MemoryStore


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("memory", MemoryStore)


@hookimpl
def csf_register_serializers(register: Register) -> None:
    register("bytes", BytesSerializer)
    register("text", "cached_stores_factory._formats:TextSerializer")
    register("json", "cached_stores_factory._formats:JsonSerializer")
    register("pickle", "cached_stores_factory._formats:PickleSerializer")
