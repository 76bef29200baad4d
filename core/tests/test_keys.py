"""Key validation: one set of rules, enforced for every store."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cached_stores_factory import CachedStore, CachedStoreFactory, MemoryStore, validate_key
from cached_stores_factory._keys import RESERVED_ROOT
from cached_stores_factory.errors import InvalidKeyError

segment = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/\\"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))
valid_keys = (
    st.lists(segment, min_size=1, max_size=5)
    .map("/".join)
    .filter(lambda k: len(k.encode()) <= 1024 and not any(0x7F <= ord(c) <= 0x9F for c in k))
)


@given(valid_keys)
def test_valid_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../secret", "'..'"),
        ("a/../../b", "'..'"),
        ("a//b", "empty"),
        ("a/./b", "'.'"),
        ("a/", "ends with '/': that is a prefix, not a key"),
        ("a/b/", "ends with '/': that is a prefix, not a key"),
        ("../", "'..'"),
        ("a//", "empty"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x85b", "control"),
        ("a\\..\\b", "backslash"),
        ("x" * 1025, "1025 UTF-8 bytes"),
        ("é" * 513, "1026 UTF-8 bytes"),
        ("\ud800", "unicode"),
    ],
)
def test_invalid_keys_are_rejected_with_the_reason(key: str, reason: str) -> None:
    with pytest.raises(InvalidKeyError, match=reason) as info:
        validate_key(key)
    assert isinstance(info.value, ValueError)


def test_non_str_keys_are_rejected() -> None:
    with pytest.raises(InvalidKeyError, match="must be a str, not bytes"):
        validate_key(b"a")  # type: ignore[arg-type]


def test_the_limit_is_1024_utf8_bytes_inclusive() -> None:
    assert validate_key("x" * 1024) == "x" * 1024


@pytest.mark.parametrize("method", ["get", "delete", "stat", "open_read", "__contains__"])
def test_every_store_validates_before_its_own_code_runs(method: str) -> None:
    store = MemoryStore()
    with pytest.raises(InvalidKeyError):
        getattr(store, method)("../escape")
    with pytest.raises(InvalidKeyError):
        store.put("../escape", b"x")
    assert list(store.keys()) == []


def test_listing_prefix_is_checked() -> None:
    with pytest.raises(InvalidKeyError, match="prefix"):
        list(MemoryStore().keys("/abs"))


# -- the prefix a cached store reserves for ranged-read blocks ------------------------------

reserved_keys = st.one_of(
    st.just(RESERVED_ROOT),
    valid_keys.map(f"{RESERVED_ROOT}/".__add__).filter(lambda k: len(k.encode()) <= 1024),
)

# Every way a key reaches a cached store from its user.
ENTRY_POINTS: dict[str, Callable[[CachedStore, str], object]] = {
    "open rb": lambda cs, key: cs.open(key, "rb"),
    "open r": lambda cs, key: cs.open(key, "r"),
    "open wb": lambda cs, key: cs.open(key, "wb"),
    "open a": lambda cs, key: cs.open(key, "a"),
    "open_read": lambda cs, key: cs.open_read(key),
    "open_fresh": lambda cs, key: cs.open_fresh(key),
    "open_range": lambda cs, key: cs.open_range(key, 0, 2),
    "open_read_if_changed": lambda cs, key: cs.open_read_if_changed(key, "etag"),
    "get": lambda cs, key: cs.get(key, None),
    "getitem": lambda cs, key: cs[key],
    "put": lambda cs, key: cs.put(key, b"user"),
    "setitem": lambda cs, key: cs.__setitem__(key, b"user"),
    "put_stream": lambda cs, key: cs.put_stream(key, io.BytesIO(b"user")),
    "delete": lambda cs, key: cs.delete(key),
    "delitem": lambda cs, key: cs.__delitem__(key),
    "stat": lambda cs, key: cs.stat(key),
    "contains": lambda cs, key: key in cs,
    "touch": lambda cs, key: cs.touch(key),
    "invalidate": lambda cs, key: cs.invalidate(key),
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@given(key=reserved_keys)
def test_a_cached_store_refuses_keys_under_the_reserved_prefix(entry_point: str, key: str) -> None:
    local, remote = MemoryStore(), MemoryStore()
    local.put(key, b"block")  # what a ranged read keeps there
    remote.put(key, b"written by another client")
    cs = CachedStoreFactory(local, remote).build()
    with pytest.raises(InvalidKeyError, match="reserves for the blocks of ranged reads"):
        ENTRY_POINTS[entry_point](cs, key)
    assert local.get(key) == b"block"
    assert remote.get(key) == b"written by another client"
    assert not any(cs.stats().values())


@given(st.one_of(valid_keys, reserved_keys))
def test_only_keys_under_the_reserved_prefix_are_refused(key: str) -> None:
    cs = CachedStoreFactory(MemoryStore(), MemoryStore()).build()
    if key.partition("/")[0] == RESERVED_ROOT:
        with pytest.raises(InvalidKeyError):
            cs.put(key, b"x")
    else:
        cs.put(key, b"x")
        assert cs.get(key) == b"x"
        assert list(cs.keys()) == [key]


@pytest.mark.parametrize("key", [".csf-partialx", ".csf-partial-old/a", "a/.csf-partial/b", ".csf"])
def test_keys_that_only_look_like_the_reserved_prefix_are_ordinary(key: str) -> None:
    cs = CachedStoreFactory(MemoryStore(), MemoryStore()).build()
    cs.put(key, b"x")
    assert cs.get(key) == b"x"


def test_a_cached_store_lists_no_key_under_the_reserved_prefix() -> None:
    local, remote = MemoryStore(), MemoryStore()
    remote.put(f"{RESERVED_ROOT}/from-another-client", b"x")
    remote.put(RESERVED_ROOT, b"x")
    local.put(f"{RESERVED_ROOT}/0123abcd/0", b"block")
    cs = CachedStoreFactory(local, remote).build()
    cs.put("a", b"x")
    assert list(cs.keys()) == ["a"]
    assert list(cs.keys(".csf")) == []
