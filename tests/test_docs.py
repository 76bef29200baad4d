"""The docs stay true: every first-party component's arguments are in the config reference."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from cached_stores_factory.plugins import FIRST_PARTY, registry

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / "docs" / "configuration.md").read_text()
CORE_COMPONENTS = [
    ("store", "memory"),
    ("serializer", "bytes"),
    ("serializer", "text"),
    ("serializer", "json"),
    ("serializer", "pickle"),
]
TEST_ONLY_ARGUMENTS = {"clock"}  # a callable for tests; a config cannot pass one


def reference_section(kind: str, name: str) -> str:
    """The text under the heading "### `name` (kind)" up to the next heading."""
    match = re.search(
        rf"^### `{re.escape(name)}` \({kind}\)$(.*?)(?=^##|\Z)", REFERENCE, re.M | re.S
    )
    assert match, f"docs/configuration.md has no section '### `{name}` ({kind})'"
    return match.group(1)


@pytest.mark.parametrize(("kind", "name"), [*FIRST_PARTY, *CORE_COMPONENTS])
def test_every_argument_of_every_first_party_component_is_documented(kind: str, name: str) -> None:
    section = reference_section(kind, name)
    factory = registry.get(kind, name).factory  # type: ignore[arg-type]
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if parameter.name.startswith("_") or parameter.name in TEST_ONLY_ARGUMENTS:
            continue
        assert f"`{parameter.name}`" in section, f"{kind} {name!r}: `{parameter.name}` undocumented"


def test_readme_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to missing {target}"
