"""One small exception hierarchy, so callers can catch ours without catching everything.

Every error here carries a message a user can act on without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CSFError",
    "ConfigError",
    "CorruptEntryError",
    "DuplicatePluginError",
    "EntryChangedError",
    "InvalidKeyError",
    "KeyNotFoundError",
    "LocalStoreUnavailableError",
    "ObjectArchivedError",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "RemoteError",
    "SerializerError",
    "StoreClosedError",
    "StoreError",
    "UnsafeSerializerError",
    "redact",
]


class CSFError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigError(CSFError, ValueError):
    """A configuration is malformed, names something unknown, or passes bad arguments."""


class PluginError(CSFError):
    """Something is wrong with a plugin or with the name used to find one."""


class PluginNotFoundError(PluginError, ConfigError):
    """No installed plugin registers the requested name."""


class PluginLoadError(PluginError):
    """A plugin exists but failed to import or to register; the cause is chained."""


class DuplicatePluginError(PluginError):
    """Two distributions register the same name for the same kind of component."""


class InvalidKeyError(CSFError, ValueError):
    """A key is not a valid '/'-separated relative path."""


class KeyNotFoundError(CSFError, KeyError):
    """A store holds no entry for the key.  A KeyError, so `except KeyError` works.

    Args:
        key: The key that has no entry.
        where: The store that was asked, for the message (a repr, or "memory store").
    """

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.where = where

    def __str__(self) -> str:
        return f"no entry for key {self.key!r}" + (f" in {self.where}" if self.where else "")


class StoreError(CSFError):
    """A backend failed.  The backend's message is kept; credentials are never part of it."""


class StoreClosedError(StoreError):
    """The cached store (or store) was closed: it takes no more reads or writes."""


class LocalStoreUnavailableError(StoreError):
    """The local store failed during a write, so copies of the key there could outlive it.

    `remote_changed` is False when the write was refused before the remote changed (the
    usual case), True when the local store failed after the remote write (the remote holds
    the new value; other processes may serve the old copy until its change mark lapses).
    """

    def __init__(self, message: str, *, remote_changed: bool = False) -> None:
        super().__init__(message)
        self.remote_changed = remote_changed


class CorruptEntryError(StoreError):
    """A stored entry's bytes or metadata no longer match what was recorded when it was stored.

    A local store raises it from `open_read`, `get` or a read of the entry's stream; the
    engine then drops the entry and fetches the object again instead of serving it.
    """


class EntryChangedError(StoreError):
    """An entry read in ranges changed between two of them: its entity tag is not the first one.

    Blocks of two versions are never spliced into one read; open the entry again to read the
    new version.

    Args:
        key: The entry's key.
        expected: The entity tag the read began with.
        found: The entity tag the entry has now, when the store said.
    """

    def __init__(self, key: str, expected: str, found: str | None = None) -> None:
        super().__init__(key, expected, found)
        self.key = key
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        now = f", now {self.found}" if self.found else ""
        return (
            f"{self.key!r} changed while it was read in ranges (version {self.expected}{now}); "
            "open it again to read the new version"
        )


class RemoteError(StoreError):
    """The remote store failed (refused, reset, timed out, or errors left after retries)."""


class ObjectArchivedError(RemoteError):
    """The object sits in an archive storage class (S3 Glacier, Deep Archive, the archive
    tiers of Intelligent-Tiering) and must be restored before it can be read.

    Not an outage: the remote answered, and reads of other objects go on as usual.
    `storage_class` names the class (and tier); `restore` is "none" (no restore asked for),
    "requested" (this read asked for one), "in progress" or "done" (a restored copy is
    readable until `expiry`, an HTTP date, or S3 answered before it said so).
    """

    def __init__(
        self,
        key: str,
        storage_class: str,
        restore: str,
        *,
        where: str = "",
        expiry: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(key, storage_class, restore, where, expiry, hint)
        self.key = key
        self.storage_class = storage_class
        self.restore = restore
        self.where = where
        self.expiry = expiry
        self.hint = hint

    @property
    def restore_in_progress(self) -> bool:
        """Whether S3 is restoring the object (asked by this read or an earlier one)."""
        return self.restore in ("requested", "in progress")

    def __str__(self) -> str:
        states = {
            "none": "no restore is in progress",
            "requested": "a restore was requested by this read",
            "in progress": "a restore is in progress",
            "done": f"a restored copy is readable until {self.expiry}",
        }
        state = states.get(self.restore, self.restore)
        where = self.where or repr(self.key)
        return f"{where} is archived in {self.storage_class}: {state}" + (
            f"; {self.hint}" if self.hint else ""
        )


class SerializerError(CSFError, ValueError):
    """A value could not be turned into bytes, or bytes back into a value."""


class UnsafeSerializerError(SerializerError, ConfigError):
    """A serializer that can execute code on load was used without being switched on."""


def redact(message: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret in `message` by '***' before it reaches a log or an error."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
