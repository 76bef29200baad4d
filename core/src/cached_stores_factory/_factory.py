"""CachedStoreFactory: compose a local store, a remote store and a policy, from code or config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

import attrs

from ._config import load_config, parse, resolve
from ._engine import CachedStore
from ._policy import CachePolicy
from ._serializer import Serializer
from ._store import Store
from .plugins import PluginRegistry, registry

__all__ = ["CachedStoreFactory"]


def _serializer_from_name(value: Serializer | str | None) -> Serializer | None:
    if isinstance(value, str):
        serializer: Serializer = registry.create("serializer", value)
        return serializer
    return value


@attrs.frozen
class CachedStoreFactory:
    """The parts of a cached store.  `build()` makes one; `from_config()` names the parts."""

    local_store: Store = attrs.field(validator=attrs.validators.instance_of(Store))  # type: ignore[type-abstract]
    remote_store: Store = attrs.field(validator=attrs.validators.instance_of(Store))  # type: ignore[type-abstract]
    cache_policy: CachePolicy | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(CachePolicy))
    )
    serializer: Serializer | None = attrs.field(
        default=None,
        kw_only=True,
        converter=_serializer_from_name,
        validator=attrs.validators.optional(attrs.validators.instance_of(Serializer)),  # type: ignore[type-abstract]
    )

    def build(self) -> CachedStore:
        """A cached store over these parts, with the policy bound to the local store."""
        return CachedStore(self.local_store, self.remote_store, self.cache_policy, self.serializer)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | str | os.PathLike[str],
        *,
        plugins: PluginRegistry | None = None,
    ) -> Self:
        """Build the factory from a mapping or a TOML file, each part found by name.

        Sections: [local] and [remote] (`store = "<name>"`), optional [policy]
        (`name = "<name>"`) and `serializer = "<name>"` (or a [serializer] table).  Other keys
        are the component's constructor arguments; `${VAR}` in a string reads the environment.
        """
        source, mapping = load_config(config)
        specs = parse(source, mapping)
        found = plugins or registry
        parts = {
            section: resolve(source, found, spec, section)
            for section, spec in specs.items()
            if spec is not None
        }
        return cls(
            parts["local"],
            parts["remote"],
            parts.get("policy"),
            serializer=parts.get("serializer"),
        )
