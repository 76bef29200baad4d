"""Support for the seed's import paths, which re-export first-party plugins."""

from __future__ import annotations


def missing_plugin(exc: ModuleNotFoundError, module: str, names: str, install: str) -> ImportError:
    """The ImportError for a plugin that is not installed, naming the command that installs it.

    A ModuleNotFoundError from inside an installed plugin is returned unchanged.
    """
    if exc.name is None or not module.startswith(exc.name):
        return exc
    return ImportError(
        f"{names} ships in a separate distribution that is not installed: {install}", name=module
    )
