"""Key validation: one set of rules, enforced for every store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cached_stores_factory import MemoryStore, validate_key
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
        ("a/", "empty"),
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
