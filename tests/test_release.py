"""scripts/release on a copy of the tree's version files: one version everywhere, a dated
CHANGELOG section, and refusals that leave every file as it was."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "scripts" / "release"
CORE_VERSION = "packages/openpista-core/src/openpista/_version.py"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of every file that scripts/release reads or writes."""
    files = ["pyproject.toml", "CHANGELOG.md", CORE_VERSION]
    files += [str(p.relative_to(REPO)) for p in REPO.glob("packages/*/pyproject.toml")]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def release(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RELEASE), *args, "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_the_checkout_is_at_one_version() -> None:
    done = release(REPO, "--check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("✓ every distribution is at ")


def test_a_release_bumps_every_distribution_and_dates_the_changelog(tree: Path) -> None:
    unreleased = (tree / "CHANGELOG.md").read_text().split("## Unreleased\n", 1)[1]

    done = release(tree, "1.2.3", "--date", "2027-01-31")

    assert done.returncode == 0, done.stderr
    assert "git tag -a v1.2.3" in done.stdout
    for path in [tree / "pyproject.toml", *tree.glob("packages/*/pyproject.toml")]:
        project = tomllib.loads(path.read_text())["project"]
        assert project.get("version", "1.2.3") == "1.2.3", path
        pins = [
            r
            for group in [
                project["dependencies"],
                *project.get("optional-dependencies", {}).values(),
            ]
            for r in group
            if r.startswith("openpista")
        ]
        assert all(pin.endswith("==1.2.3") for pin in pins), (path, pins)
    assert (tree / CORE_VERSION).read_text() == '__version__ = "1.2.3"\n'
    changelog = (tree / "CHANGELOG.md").read_text()
    assert "## Unreleased\n\n## 1.2.3 - 2027-01-31\n" + unreleased in changelog
    assert release(tree, "--check").stdout == "✓ every distribution is at 1.2.3\n"


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("0.0.9", "is not newer than the current version"),
        ("1.2", "is not a version like 1.2.3"),
        ("1.2.3; rm -rf /", "is not a version like 1.2.3"),
        ("", "is not a version like 1.2.3"),
    ],
)
def test_a_bad_version_is_refused_and_nothing_changes(
    tree: Path, version: str, reason: str
) -> None:
    before = snapshot(tree)

    done = release(tree, version)

    assert done.returncode == 1
    assert done.stderr.startswith("❌ ")
    assert reason in done.stderr
    assert snapshot(tree) == before


def test_disagreeing_versions_are_listed_and_nothing_changes(tree: Path) -> None:
    web = tree / "packages/openpista-web/pyproject.toml"
    web.write_text(re.sub(r'^version = ".*"$', 'version = "0.0.7"', web.read_text(), flags=re.M))
    before = snapshot(tree)

    done = release(tree, "1.0.0")

    assert done.returncode == 1
    assert "disagree on the version" in done.stderr
    assert "0.0.7: packages/openpista-web/pyproject.toml" in done.stderr
    assert snapshot(tree) == before
    assert release(tree, "--check").returncode == 1


def test_an_empty_unreleased_section_or_a_repeated_release_is_refused(tree: Path) -> None:
    assert release(tree, "1.0.0", "--date", "2027-01-01").returncode == 0
    before = snapshot(tree)

    empty = release(tree, "1.0.1")
    again = release(tree, "1.0.0rc1")

    assert '"## Unreleased" is empty' in empty.stderr
    assert "is not newer" in again.stderr
    assert snapshot(tree) == before


def test_pre_releases_order_before_the_release(tree: Path) -> None:
    for version in ("1.0.0.dev1", "1.0.0a1", "1.0.0rc1.dev0", "1.0.0rc1", "1.0.0"):
        changelog = tree / "CHANGELOG.md"
        changelog.write_text(
            changelog.read_text().replace("## Unreleased\n", "## Unreleased\n- x\n")
        )
        done = release(tree, version)
        assert done.returncode == 0, (version, done.stderr)
