"""The docs stay true: every code block runs, every argument is documented, the site builds.

A fenced block in docs/ runs by its language: `python` in a fresh interpreter (with an AWS
profile `my_profile` and a default profile pointing at moto's S3 server, whose bucket
`my_bucket` holds `path/my.file`), `toml` is parsed and, when it has config sections, checked
by `CachedStoreFactory.from_config` (which makes no store), `ini` is parsed.  A block whose
line before the fence is `<!-- fragment: why -->` is not run; a block with no language is text.
"""

from __future__ import annotations

import configparser
import importlib
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.plugins import FIRST_PARTY, registry
from cached_stores_factory.testing.servers import S3Server

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


# -- every code block runs ------------------------------------------------------------------

DOCS = sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^(\s*)```(\w*)")
FRAGMENT = re.compile(r"^<!-- fragment: .+ -->$")
SECTIONS = ("local", "remote", "policy", "serializer")


@attrs.frozen
class Block:
    path: Path
    line: int
    language: str
    code: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its language and fragment marker."""
    lines = path.read_text().splitlines()
    blocks, number = [], 0
    while number < len(lines):
        fence = FENCE.match(lines[number])
        if not fence:
            number += 1
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == "```")
        indent = len(fence.group(1))
        body = "\n".join(line[indent:] for line in lines[number + 1 : end]) + "\n"
        marked = number > 0 and bool(FRAGMENT.match(lines[number - 1].strip()))
        blocks.append(Block(path, number + 1, fence.group(2), body, marked))
        number = end + 1
    return blocks


BLOCKS = [block for path in DOCS for block in code_blocks(path)]
RUNNABLE = ("python", "toml", "ini")


def test_every_block_runs_or_is_a_marked_fragment() -> None:
    unmarked = [
        f"{b} ({b.language})"
        for b in BLOCKS
        if b.language and b.language not in RUNNABLE and not b.fragment
    ]
    assert not unmarked, f"mark these <!-- fragment: why --> or make them runnable: {unmarked}"
    assert sum(b.language == "python" and not b.fragment for b in BLOCKS) >= 5


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> dict[str, str]:
    """The environment the examples assume: AWS profiles on moto's S3, a private TMPDIR."""
    home = tmp_path_factory.mktemp("docs-env")
    profile = (
        f"endpoint_url = {s3_server.endpoint_url}\nregion = eu-central-1\n"
        "aws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    (home / "aws-config").write_text(f"[profile my_profile]\n{profile}[default]\n{profile}")
    client = s3_server.client()
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    if "my_bucket" not in existing:
        client.create_bucket(
            Bucket="my_bucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
    client.put_object(Bucket="my_bucket", Key="path/my.file", Body=b"the docs' object")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(home / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        TMPDIR=str(home),
    )
    return env


@pytest.mark.s3
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language == "python" and not b.fragment], ids=str
)
def test_python_blocks_run(block: Block, docs_env: dict[str, str], tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=tmp_path,
        env=docs_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"{block} failed:\n{out.stderr}"


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language == "toml" and not b.fragment], ids=str
)
def test_toml_blocks_parse_and_configs_check(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    document: dict[str, Any] = tomllib.loads(block.code)
    if not set(document) & set(SECTIONS):
        return  # another file's TOML (a pyproject.toml): parsing it is the check
    for name in re.findall(r"\$\{(\w+)", block.code):
        monkeypatch.setenv(name, "from-the-environment")
    # A section on its own is checked inside a config whose other stores are memory stores.
    config = {"local": {"store": "memory"}, "remote": {"store": "memory"}, **document}
    CachedStoreFactory.from_config(config)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language == "ini" and not b.fragment], ids=str
)
def test_ini_blocks_parse(block: Block) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(inspect.cleandoc(block.code))
    assert parser.sections()


# -- the site ---------------------------------------------------------------------------------


def test_the_docs_site_builds_strictly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make docs`: mkdocs --strict fails on any warning (a broken link, a bad reference)."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    out = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "CachedStoreFactory" in reference
    assert "from_toml" in reference  # generated from the docstrings
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog  # CHANGELOG.md, included
    # The classes are read from the folders the reference is built from (the otel plugin is
    # documented but not installed here).
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    for folder in handler["paths"]:
        monkeypatch.syspath_prepend(str(REPO / folder))
    check_constructors_are_documented(reference)


# Made by CachedStoreFactory.build() and returned by stats(): not constructed by users.
NOT_CONSTRUCTED = {"cached_stores_factory.CachedStore", "cached_stores_factory.CacheStats"}


def constructor_parameters(cls: type) -> list[str]:
    """The arguments a user passes to make `cls` (a named tuple's fields included)."""
    own_init = any("__init__" in vars(base) for base in cls.__mro__[:-1])
    signature = inspect.signature(cls.__init__ if own_init else cls)
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


def check_constructors_are_documented(reference: str) -> None:
    """Every class of the reference shows each constructor argument with its meaning (a
    docstring's `Args:`, or `Attributes:` for a named tuple), and no private base class."""
    targets = re.findall(r"^::: (\S+)", (REPO / "docs" / "reference.md").read_text(), re.M)
    checked = []
    for target in targets:
        module, _, name = target.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if not isinstance(cls, type) or target in NOT_CONSTRUCTED:
            continue
        start = reference.index(f'id="{target}"')
        rendered = reference[start : reference.index('<div class="doc doc-children">', start)]
        tables = re.findall(
            r'doc-section-title">(?:Parameters|Attributes):</span>.*?</table>', rendered, re.S
        )
        documented = re.findall(r"<td>\s*<code>(?:<span[^>]*>)?(\w+)<", "".join(tables))
        missing = [p for p in constructor_parameters(cls) if p not in documented]
        assert not missing, f"{target}: no meaning given for {missing}"
        bases = re.findall(r'doc-class-bases">(.*?)</p>', rendered, re.S)
        assert not re.findall(r">_\w+</span>", "".join(bases)), f"{target}: {bases}"
        checked.append(name)
    assert {"TTLCache", "FIFOCache", "LRUCache", "S3Store", "EntryStat", "OTelListener"} <= set(
        checked
    )
