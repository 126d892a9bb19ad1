"""The docs site: mkdocs-material with the API reference of mkdocstrings, built ``--strict``
(every page under docs/ is in it; a broken link or a docstring that cannot be rendered
fails the build)."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The modules whose __all__ is the contract (docs/api-stability.md): each name has its entry.
CONTRACT = ("openpista", "openpista.tools", "openpista.skills", "openpista.doctor", "openpista.cli")
# A version string and pluggy's marker: the hook specifications' introduction shows them.
UNDOCUMENTED = {"__version__", "hookimpl"}


def support_modules() -> set[str]:
    """The ``openpista_testing`` modules that the plugin packages' tests import."""
    plugins = set(REPO.glob("packages/openpista-*/tests/**/*.py")) - set(
        REPO.glob("packages/openpista-core/tests/**/*.py")
    )
    imports = re.compile(r"^\s*from (openpista_testing\.\w+) import", re.M)
    return {module for path in plugins for module in imports.findall(path.read_text())}


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(root / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository seen from ``tmp_path``: docs/ and mkdocs.yml copied, the rest linked."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name in ("docs", "mkdocs.yml"):
            copy = shutil.copytree if entry.is_dir() else shutil.copy
            copy(entry, root / entry.name)
        elif not entry.name.startswith("."):
            (root / entry.name).symlink_to(entry)
    return root


def test_the_site_builds_strict_with_every_page_and_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"

    done = build(REPO, site)

    assert done.returncode == 0, done.stderr[-3000:]
    for page in (REPO / "docs").rglob("*.md"):
        relative = page.relative_to(REPO / "docs").with_suffix("")
        built = site / ("index.html" if relative.name == "index" else relative / "index.html")
        assert built.is_file(), page
    api = (site / "api" / "index.html").read_text()
    documented = {anchor.rsplit(".", 1)[-1] for anchor in re.findall(r'id="([\w.]+)"', api)}
    for module in CONTRACT:
        names = set(importlib.import_module(module).__all__) - UNDOCUMENTED
        assert names - documented == set(), module
    assert {"register_tools", "doctor_checks", "LlmEmulator", "ChannelContract"} <= documented
    # Docstrings' Sphinx roles become code, linking to the entry (scripts/docs_roles.py).
    assert re.search(r":(class|func|meth|attr|data|mod|exc):<code>", api) is None
    link = '<a href="#openpista.plugin_context.PluginContext"><code>PluginContext</code></a>'
    assert link in api
    testing = support_modules()
    assert {"openpista_testing.emulator", "openpista_testing.gateways"} <= testing
    assert {m for m in testing if f'id="{m}"' not in api} == set()
    config = (site / "configuration" / "index.html").read_text()
    # The project names no repository URL: a link to a repository file becomes its text.
    assert "<code>config.example.toml</code>" in config
    assert "config.example.toml</a>" not in config
    assert 'class="md-source"' not in config  # nor a repository button
    assert "repo_url" not in (REPO / "mkdocs.yml").read_text().replace("(repo_url)", "")


def test_repository_files_link_to_the_url_of_the_root_pyproject(
    checkout: Path, tmp_path: Path
) -> None:
    pyproject = (checkout / "pyproject.toml").read_text()
    (checkout / "pyproject.toml").unlink()
    (checkout / "pyproject.toml").write_text(
        pyproject.replace(
            "\n[project.optional-dependencies]",
            '\n[project.urls]\nRepository = "https://code.invalid/team/openpista/"\n'
            "\n[project.optional-dependencies]",
            1,
        )
    )
    site = tmp_path / "site"

    done = build(checkout, site)

    assert done.returncode == 0, done.stderr[-3000:]
    config = (site / "configuration" / "index.html").read_text()
    assert 'href="https://code.invalid/team/openpista/blob/main/config.example.toml"' in config
    skills = (site / "skills" / "index.html").read_text()
    assert 'href="https://code.invalid/team/openpista/tree/main/skills"' in skills
    assert '<a href="https://code.invalid/team/openpista" title=' in config  # the theme's


def test_a_broken_link_fails_the_build(checkout: Path, tmp_path: Path) -> None:
    (checkout / "docs" / "broken.md").write_text("# Broken\n\nSee [gone](no-such-page.md).\n")

    done = build(checkout, tmp_path / "site")

    assert done.returncode == 1
    assert "no-such-page.md" in done.stderr


def test_a_link_to_a_missing_repository_file_fails_the_build(
    checkout: Path, tmp_path: Path
) -> None:
    (checkout / "docs" / "outside.md").write_text("# Out\n\nSee [it](../no-such-file.toml).\n")

    done = build(checkout, tmp_path / "site")

    assert done.returncode == 1
    assert "../no-such-file.toml" in done.stderr
