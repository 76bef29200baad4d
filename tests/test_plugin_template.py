"""`csf new-plugin NAME` writes a distribution whose own tests pass as generated.

The plugin is installed with pip (no dependencies: the core is already here) into a folder
of its own put on PYTHONPATH for its test run, so this test environment is left as it was.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CSF = str(BIN / "csf")


def run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.slow
def test_a_new_plugin_installs_and_passes_its_tests_as_generated(tmp_path: Path) -> None:
    project = tmp_path / "csf-acme-cache"
    made = run(CSF, "new-plugin", "acme-cache", "--dir", project)
    assert made.returncode == 0, made.stderr
    written = {line.strip() for line in made.stdout.splitlines() if line.startswith("  ")}
    assert written == {
        "README.md",
        "pyproject.toml",
        "src/csf_acme_cache/__init__.py",
        "src/csf_acme_cache/policy.py",
        "src/csf_acme_cache/py.typed",
        "src/csf_acme_cache/serializer.py",
        "src/csf_acme_cache/store.py",
        "tests/test_csf_acme_cache.py",
    }
    assert 'pip install -e ".[test]" && python -m pytest -q' in made.stdout

    # What an author starts from passes the linter its pyproject.toml sets up, and mypy --strict.
    linted = run(BIN / "ruff", "check", ".", cwd=project)
    assert linted.returncode == 0, linted.stdout
    formatted = run(BIN / "ruff", "format", "--check", ".", cwd=project)
    assert formatted.returncode == 0, formatted.stdout
    typed = run(BIN / "mypy", "--strict", "src", "tests", cwd=project)
    assert typed.returncode == 0, typed.stdout

    site = tmp_path / "site"
    installed = run(
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--target", site, project,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (site / "csf_acme_cache" / "store.py").exists()
    entry_points = next(site.glob("csf_acme_cache-0.1.0.dist-info")) / "entry_points.txt"
    assert entry_points.read_text().split() == [
        "[cached_stores_factory]",
        "acme-cache",
        "=",
        "csf_acme_cache",
    ]

    tested = run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        cwd=project, env={**os.environ, "PYTHONPATH": str(site)},
    )  # fmt: skip
    summary = tested.stdout.strip().splitlines()[-1]
    assert tested.returncode == 0, tested.stdout[-3000:]
    # Every conformance test ran (none skipped) and the plugin was found by name.
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary
    assert int(summary.split()[0]) >= 40

    listed = run(CSF, "plugins", env={**os.environ, "PYTHONPATH": str(site)})
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    for kind in ("store", "policy", "serializer"):
        assert [kind, "acme-cache", "csf-acme-cache"] in rows


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Acme", "name 'Acme' must be lowercase letters and digits, in words joined by single"),
        ("acme--cache", "name 'acme--cache' must be lowercase letters and digits"),
        ("9acme", "name '9acme' must be lowercase letters and digits"),
    ],
)
def test_a_bad_plugin_name_is_a_usage_error(tmp_path: Path, name: str, problem: str) -> None:
    made = run(CSF, "new-plugin", name, "--dir", tmp_path / "p")
    assert (made.returncode, made.stdout) == (2, "")
    assert made.stderr.startswith(f"csf: error: new-plugin: {problem}")
    assert not (tmp_path / "p").exists()


def test_new_plugin_never_writes_into_a_folder_that_has_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    made = run(CSF, "new-plugin", "acme", "--dir", tmp_path)
    assert made.returncode == 2
    assert (
        made.stderr == f"csf: error: new-plugin: {tmp_path} exists and is not an empty directory\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
