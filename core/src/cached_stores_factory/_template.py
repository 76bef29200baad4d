"""`csf new-plugin NAME`: a plugin distribution that passes the conformance suites as written.

The files are in `plugin_template/`, each a `string.Template` (`$name`, `$module`, `$dist`,
`${Class}`, `$core_version`) named with a `.tmpl` suffix, so no tool takes them for code.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from ._version import __version__
from .errors import ConfigError

__all__ = ["NAME_RULE", "write_plugin"]

TEMPLATE = Path(__file__).parent / "plugin_template"
NAME_RULE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
"""A plugin's name: lowercase letters and digits in words joined by single hyphens."""


def _values(name: str) -> dict[str, str]:
    words = name.split("-")
    return {
        "name": name,
        "dist": f"csf-{name}",
        "module": "csf_" + "_".join(words),
        "Class": "".join(word.capitalize() for word in words),
        "core_version": __version__,
    }


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write the plugin `name` into `directory` (new, or empty); return the files written."""
    if not NAME_RULE.fullmatch(name):
        raise ConfigError(
            f"new-plugin: name {name!r} must be lowercase letters and digits, in words joined by "
            "single hyphens, starting with a letter (such as 'acme' or 'acme-cache')"
        )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"new-plugin: {directory} exists and is not an empty directory")
    values = _values(name)
    written = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).with_suffix("")  # drop ".tmpl"
        if relative.parts[0] == "src":  # the package folder is named after the module
            relative = Path("src", values["module"], *relative.parts[1:])
        elif relative.name == "test_plugin.py":
            relative = relative.with_name(f"test_{values['module']}.py")
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(string.Template(source.read_text()).substitute(values))
        written.append(target)
    return written
