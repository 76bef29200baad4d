"""Every distribution is installable the way users install: `make dist`, then pip from dist/."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECTS = [REPO, REPO / "core", *sorted(p.parent for p in REPO.glob("plugins/*/pyproject.toml"))]
LICENSE = (REPO / "LICENSE").read_text()


def project(folder: Path) -> dict[str, object]:
    table: dict[str, object] = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    return table


@pytest.mark.parametrize("folder", PROJECTS, ids=lambda p: p.name)
def test_every_distribution_declares_its_license_readme_classifiers_and_python(
    folder: Path,
) -> None:
    meta = project(folder)
    assert meta["license"] == "MIT"
    assert meta["license-files"] == ["LICENSE"]
    assert (folder / "LICENSE").read_text() == LICENSE
    assert (folder / str(meta["readme"])).read_text().startswith("# ")
    assert meta["requires-python"] == ">=3.11"
    assert "Programming Language :: Python :: 3.11" in meta["classifiers"]  # type: ignore[operator]


def test_the_bundle_s_extras_name_only_distributions_of_this_repository() -> None:
    names = {project(folder)["name"] for folder in PROJECTS}
    extras: dict[str, list[str]] = project(REPO)["optional-dependencies"]  # type: ignore[assignment]
    assert {"s3", "redis", "gcs", "azure", "http", "all"} <= set(extras)
    for requirements in extras.values():
        for requirement in requirements:  # a distribution, with an extra of its own or not
            assert requirement.split("==")[0].split("[")[0] in names


def test_the_core_s_testing_extra_brings_the_conformance_kit_s_tools() -> None:
    extras: dict[str, list[str]] = project(REPO / "core")["optional-dependencies"]  # type: ignore[assignment]
    assert [r.split(">=")[0] for r in extras["testing"]] == ["pytest", "hypothesis", "moto[server]"]


def wheel_metadata(wheel: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The wheel's METADATA fields (each a list of values) and its file names."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    fields["Description"] = [message.get_payload()]  # type: ignore[list-item]
    return fields, names


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_dist_then_pip_install_from_dist_with_extras_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(["make", "dist", f"DIST={dist}"], cwd=REPO, check=True, capture_output=True)
    names = {project(folder)["name"] for folder in PROJECTS}
    wheels = {w.name.split("-")[0].replace("_", "-"): w for w in dist.glob("*.whl")}
    sdists = {s.name.rsplit("-", 1)[0].replace("_", "-") for s in dist.glob("*.tar.gz")}
    assert set(wheels) == names
    assert sdists == names
    for wheel in wheels.values():
        fields, files = wheel_metadata(wheel)
        assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), wheel.name
        assert fields["License-Expression"] == ["MIT"]
        assert fields["Requires-Python"] == [">=3.11"]
        assert "Typing :: Typed" in fields["Classifier"]
        assert fields["Description"][0].startswith("# "), wheel.name
    # `csf new-plugin` writes from templates that the core's wheel must carry.
    _, core_files = wheel_metadata(wheels["cached-stores-factory-core"])
    template = REPO / "core" / "src" / "cached_stores_factory" / "plugin_template"
    assert {f for f in core_files if "/plugin_template/" in f} == {
        f"cached_stores_factory/plugin_template/{t.relative_to(template)}"
        for t in template.rglob("*.tmpl")
    }

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--find-links",
            str(dist),
            "-c",
            str(REPO / "requirements" / "constraints.txt"),
            "cached-stores-factory[s3,redis,fsspec]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    listing = subprocess.run(
        [str(venv / "bin" / "csf"), "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = json.loads(listing.stdout)
    assert [row for row in rows if row["error"]] == []
    found = {(row["kind"], row["name"]): row["distribution"] for row in rows}
    assert found == {
        ("store", "memory"): "cached-stores-factory-core",
        ("store", "tempfile"): "cached-stores-factory-tempfile",
        ("store", "s3"): "cached-stores-factory-s3",
        ("store", "redis"): "cached-stores-factory-redis",
        ("store", "fsspec"): "cached-stores-factory-fsspec",
        ("policy", "ttl"): "cached-stores-factory-policies",
        ("policy", "fifo"): "cached-stores-factory-policies",
        ("policy", "lru"): "cached-stores-factory-policies",
        ("serializer", "bytes"): "cached-stores-factory-core",
        ("serializer", "text"): "cached-stores-factory-core",
        ("serializer", "json"): "cached-stores-factory-core",
        ("serializer", "pickle"): "cached-stores-factory-core",
    }
    ours = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, cached_stores_factory as c\n"
            "print(c.__version__, sorted(d.metadata['Name'] for d in m.distributions()"
            " if d.metadata['Name'].startswith('cached-stores-factory')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    version = project(REPO)["version"]
    assert ours.stdout.split(" ", 1) == [
        str(version),
        "['cached-stores-factory', 'cached-stores-factory-core', 'cached-stores-factory-fsspec',"
        " 'cached-stores-factory-policies', 'cached-stores-factory-redis',"
        " 'cached-stores-factory-s3', 'cached-stores-factory-tempfile']\n",
    ]
    # The fsspec extra brought the csf:// filesystem, found through fsspec's entry points.
    protocol = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import fsspec\n"
            "fs = fsspec.filesystem('csf', config={'local': {'store': 'memory'},"
            " 'remote': {'store': 'memory'}})\n"
            "fs.pipe_file('csf://a/b', b'ok')\n"
            "print(type(fs).__module__, fs.cat_file('a/b').decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert protocol.stdout.split() == ["cached_stores_factory_fsspec._filesystem", "ok"]
    made = subprocess.run(
        [str(venv / "bin" / "csf"), "new-plugin", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "demo" / "src" / "csf_demo" / "store.py").exists(), made.stdout
