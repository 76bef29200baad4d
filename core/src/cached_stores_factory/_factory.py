"""CachedStoreFactory: compose a local store, a remote store and a policy, from code or config."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Self

from ._config import Recipe, load_config, parse, parse_toml, resolve
from ._engine import CachedStore
from ._policy import CachePolicy
from ._serializer import Serializer
from ._store import Store
from .errors import ConfigError
from .plugins import PluginRegistry, registry

__all__ = ["CachedStoreFactory"]


def _serializer_from_name(value: Serializer | str | None) -> Serializer | None:
    if isinstance(value, str):
        serializer: Serializer = registry.create("serializer", value)
        return serializer
    return value


_EXAMPLES = {
    "local_store": "TempfileStore('my_cache')",
    "remote_store": "S3Store(bucketname='my_bucket')",
    "cache_policy": "TTLCache(interval=60.0)",
    "serializer": "JsonSerializer() or 'json'",
}


def _check(
    role: str, value: object, base: type, *, optional: bool = False, recipe: bool = False
) -> None:
    """Refuse a part that is not a `base`, saying what to pass instead."""
    if isinstance(value, base) or (optional and value is None):
        return
    if recipe and isinstance(value, Recipe):
        return
    raise TypeError(
        f"CachedStoreFactory: {role} must be a {base.__name__} such as {_EXAMPLES[role]}, "
        f"not {type(value).__name__} {value!r}; to name parts as strings, use "
        "CachedStoreFactory.from_config() or from_toml()"
    )


def _check_tiers_apart(local: Store, remote: Store) -> None:
    """Refuse tiers that hold each other's entries: evicting or clearing the local tier
    would delete the remote's data.  A store whose `location()` is None is trusted."""
    if local is remote:
        relation = "are one store object"
    else:
        here, there = local.location(), remote.location()
        if here is None or there is None or here[0] != there[0]:
            return
        if here[1] == there[1]:
            relation = f"keep their entries in the same place ({here[0]}, {here[1]!r})"
        elif here[1].startswith(there[1]) or there[1].startswith(here[1]):
            relation = (
                f"overlap: one lies inside the other ({here[0]}, {here[1]!r} and {there[1]!r})"
            )
        else:
            return
    raise ConfigError(
        f"CachedStoreFactory: the local store {local!r} and the remote store {remote!r} "
        f"{relation}; evicting or clearing the local tier would delete remote data, so give "
        "the local store a place of its own"
    )


class CachedStoreFactory:
    """The parts of a cached store.  `build()` makes one; `from_config()` names the parts.

    A factory read from a config holds its stores as recipes: each store is made (its
    directory created, its client set up) when `build()` or the attribute first needs it.
    Its parts are read-only.

    Args:
        local_store: The fast store that keeps copies, such as `TempfileStore("my_cache")`.
        remote_store: The slow store that holds the data, such as
            `S3Store(bucketname="my_bucket")`; only `CachedStore.delete` removes from it.
        cache_policy: Which local copies are fresh and which must go, such as
            `TTLCache(interval=60.0)`; None keeps every copy until the local store drops it.
        serializer: How the value API (`cached[key]`, `get`, `put`) turns values into bytes:
            a Serializer or a registered name (`"json"`); None stores bytes as they are.
        availability: True lets writes go on while the local store is down, with the weaker
            promise docs/coherence.md describes; False (the default) refuses them first
            (`LocalStoreUnavailableError`), so no process can serve an older copy.
    """

    __slots__ = (
        "__weakref__",
        "_availability",
        "_cache_policy",
        "_local_store",
        "_lock",
        "_made",
        "_remote_store",
        "_serializer",
    )

    def __init__(
        self,
        local_store: Store | Recipe,
        remote_store: Store | Recipe,
        cache_policy: CachePolicy | None = None,
        *,
        serializer: Serializer | str | None = None,
        availability: bool = False,
    ) -> None:
        serializer = _serializer_from_name(serializer)
        if not isinstance(availability, bool):
            raise TypeError(
                f"CachedStoreFactory: availability must be True or False, not {availability!r}"
            )
        self._availability = availability
        _check("local_store", local_store, Store, recipe=True)
        _check("remote_store", remote_store, Store, recipe=True)
        _check("cache_policy", cache_policy, CachePolicy, optional=True)
        _check("serializer", serializer, Serializer, optional=True)
        self._local_store, self._remote_store = local_store, remote_store
        self._cache_policy, self._serializer = cache_policy, serializer
        self._made: dict[str, Store] = {}
        self._lock = threading.Lock()

    @property
    def cache_policy(self) -> CachePolicy | None:
        return self._cache_policy

    @property
    def serializer(self) -> Serializer | None:
        return self._serializer

    @property
    def local_store(self) -> Store:
        """The local store; one named by a config is made here, on first use, then kept."""
        return self._store("local", self._local_store)

    @property
    def remote_store(self) -> Store:
        """The remote store; one named by a config is made here, on first use, then kept."""
        return self._store("remote", self._remote_store)

    def _store(self, role: str, part: Store | Recipe) -> Store:
        if isinstance(part, Store):
            return part
        with self._lock:  # one store per recipe, however many threads ask at once
            if role not in self._made:
                self._made[role] = part.make()
            return self._made[role]

    def __repr__(self) -> str:
        return (
            f"CachedStoreFactory(local_store={self._local_store!r}, "
            f"remote_store={self._remote_store!r}, cache_policy={self.cache_policy!r}, "
            f"serializer={self.serializer!r})"
        )

    def build(self) -> CachedStore:
        """A cached store over these parts, with the policy bound to the local store.

        With `availability=True` a write goes on when the local store is down, at the cost
        of the cross-process promise (docs/coherence.md).  Tiers that hold each other's
        entries (the same store, directory, bucket prefix or Redis prefix, or one inside the
        other) raise ConfigError before anything is bound.

        The policy also gets the store's counters, to share with other processes.
        """
        local, remote = self.local_store, self.remote_store
        _check_tiers_apart(local, remote)
        cached = CachedStore(
            local, remote, self.cache_policy, self.serializer, availability=self._availability
        )
        cached.policy.share_stats(cached.stats)
        return cached

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
        are the component's constructor arguments; `${VAR}` and `${VAR:-default}` in a string
        read the environment.  Every argument is checked against the constructor's
        annotations here; the stores themselves are made by `build()`, so reading a config
        touches no file and no server.
        """
        source, mapping = load_config(config)
        return cls._from_mapping(source, mapping, plugins)

    @classmethod
    def from_toml(cls, text: str, *, plugins: PluginRegistry | None = None) -> Self:
        """Like `from_config`, from the text of a TOML document."""
        return cls._from_mapping("<toml>", parse_toml(text, "<toml>"), plugins)

    @classmethod
    def _from_mapping(
        cls, source: str, mapping: dict[str, Any], plugins: PluginRegistry | None
    ) -> Self:
        specs = parse(source, mapping)
        found = plugins or registry
        recipes = {
            section: resolve(source, found, spec, section)
            for section, spec in specs.items()
            if spec is not None
        }
        policy, serializer = recipes.get("policy"), recipes.get("serializer")
        # Policies and serializers hold settings only (a policy opens its state in bind(),
        # at build), so they are made now and their own checks run at once.
        return cls(
            recipes["local"],
            recipes["remote"],
            policy.make() if policy is not None else None,
            serializer=serializer.make() if serializer is not None else None,
            availability=mapping.get("availability", False),
        )
