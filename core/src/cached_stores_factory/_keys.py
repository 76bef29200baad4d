"""Key validation, in one place: every store may rely on being handed a valid key."""

from __future__ import annotations

import functools
import re

from .errors import InvalidKeyError

MAX_KEY_BYTES = 1024
RESERVED_ROOT = ".csf-partial"
"""A cached store keeps the blocks of objects read in ranges under this prefix of its local
store, so no key given to a cached store may lie under it: no object is taken for a block."""
_RESERVED_DIR = RESERVED_ROOT + "/"

# C0 controls, DEL and C1 controls: invisible, and some terminals and filesystems act on them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@functools.lru_cache(maxsize=65536)
def validate_key(key: str) -> str:
    """Return `key` if it is a '/'-separated relative path, else raise InvalidKeyError.

    Rejected: non-strings, the empty key, absolute paths, a trailing '/' (a prefix), empty,
    '.' and '..' segments, backslashes (a separator on Windows), control characters, and keys
    over 1024 UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("a key must not be empty")
    if _CONTROL.search(key):
        raise InvalidKeyError(f"key {key!r} contains a control character")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"key {key!r} is not valid unicode text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key is {size} UTF-8 bytes long; the limit is {MAX_KEY_BYTES}")
    if key.startswith("/"):
        raise InvalidKeyError(f"key {key!r} is absolute; keys are relative paths")
    if "\\" in key:
        raise InvalidKeyError(f"key {key!r} contains a backslash; use '/' to separate segments")
    prefix = key.endswith("/")  # its last, empty segment is said as such below
    for segment in key.split("/")[: -1 if prefix else None]:
        if segment in ("", ".", ".."):
            raise InvalidKeyError(
                f"key {key!r} has an empty, '.' or '..' segment; keys cannot leave their store"
            )
    if prefix:
        raise InvalidKeyError(
            f"key {key!r} ends with '/': that is a prefix, not a key; name one entry under it"
        )
    return key


def is_reserved(key: str) -> bool:
    """Whether `key` lies under RESERVED_ROOT: the cached store's bookkeeping, not an object."""
    return key == RESERVED_ROOT or key.startswith(_RESERVED_DIR)


def validate_user_key(key: str) -> str:
    """`validate_key`, and not under RESERVED_ROOT: the rules for a key a cached store is given.

    Cached as `validate_key` is, so a hit pays one dictionary lookup for it (the hit path
    calls `checked_user_key` itself, inside a `try` that turns TypeError into `unhashable`).
    """
    try:
        return checked_user_key(key)
    except TypeError:
        raise unhashable(key) from None


def unhashable(key: object) -> InvalidKeyError:
    """The error for a key the key cache can't look up: it is no str."""
    return InvalidKeyError(f"a key must be a str, not {type(key).__name__}")


@functools.lru_cache(maxsize=65536)
def checked_user_key(key: str) -> str:
    """`validate_user_key` without its TypeError check: an unhashable key raises TypeError."""
    if is_reserved(validate_key(key)):
        raise InvalidKeyError(
            f"key {key!r} is under {_RESERVED_DIR!r}, a prefix the cached store reserves "
            "for the blocks of ranged reads"
        )
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is a key's beginning: empty, or free of the characters keys forbid."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"a prefix must be a str, not {type(prefix).__name__}")
    if prefix and (_CONTROL.search(prefix) or prefix.startswith("/") or "\\" in prefix):
        raise InvalidKeyError(f"prefix {prefix!r} cannot begin any valid key")
    return prefix
