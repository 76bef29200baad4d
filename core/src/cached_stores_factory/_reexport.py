"""First-party components outside the core, and the original examples' import paths for them."""

from __future__ import annotations

from typing import Literal

Kind = Literal["store", "policy", "serializer"]

# (kind, name) -> (entry-point name, pip extra).  An empty extra means the plain
# `pip install cached-stores-factory` brings it.
FIRST_PARTY: dict[tuple[Kind, str], tuple[str, str]] = {
    ("store", "tempfile"): ("tempfile", ""),
    ("store", "redis"): ("redis", "redis"),
    ("store", "s3"): ("s3", "s3"),
    ("store", "fsspec"): ("fsspec", "fsspec"),
    ("policy", "ttl"): ("policies", ""),
    ("policy", "fifo"): ("policies", ""),
    ("policy", "lru"): ("policies", ""),
}


def install_hint(kind: Kind, name: str) -> str | None:
    """The pip command that installs a first-party component, or None for other names."""
    if (kind, name) not in FIRST_PARTY:
        return None
    extra = FIRST_PARTY[kind, name][1]
    return (
        f'pip install "cached-stores-factory[{extra}]"'
        if extra
        else "pip install cached-stores-factory"
    )


def missing_plugin(exc: ModuleNotFoundError, module: str, names: str, install: str) -> ImportError:
    """The ImportError for a plugin that is not installed, naming the command that installs it.

    A ModuleNotFoundError from inside an installed plugin is returned unchanged.
    """
    if exc.name is None or not module.startswith(exc.name):
        return exc
    return ImportError(
        f"{names} ships in a separate distribution that is not installed: {install}", name=module
    )
