"""scripts/api-check on a throw-away git repository: a break of the public API since the
last tag fails unless the CHANGELOG announces it; private and engine modules do not count."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts" / "api-check"
RELEASED = '''"""Demo."""


def greet(name: str) -> str:
    """Say hello."""
    return name


def _helper(x: int) -> int:
    return x
'''


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose tag v1.0.0 holds ``pkg.greet(name)`` and ``pkg.gateway.run()``."""
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(RELEASED)
    (package / "gateway.py").write_text("def run(a: int) -> None:\n    pass\n")
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n\n## 1.0.0\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    git(tmp_path, "tag", "v1.0.0")
    return tmp_path


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--root", str(root), "pkg=src"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_an_unchanged_or_grown_api_passes(repo: Path) -> None:
    init = repo / "src" / "pkg" / "__init__.py"
    init.write_text(RELEASED + "\n\ndef wave(times: int = 1) -> None:\n    pass\n")

    done = check(repo)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "✓ public API compatible with v1.0.0"


def test_a_removed_or_changed_name_fails_until_announced(repo: Path) -> None:
    init = repo / "src" / "pkg" / "__init__.py"
    init.write_text(RELEASED.replace("name: str)", "name: str, loud: bool)"))

    done = check(repo)

    assert done.returncode == 1
    assert "greet(loud): Parameter was added as required" in done.stdout
    assert done.stderr.startswith("❌ 1 break(s) of the public API since v1.0.0")
    changelog = repo / "CHANGELOG.md"
    announcement = "## Unreleased\n\n### Breaking\n- greet needs loud\n"
    changelog.write_text(changelog.read_text().replace("## Unreleased\n", announcement))
    announced = check(repo)
    assert announced.returncode == 0, announced.stderr
    assert "(breaks announced)" in announced.stdout


def test_private_names_and_engine_modules_may_change(repo: Path) -> None:
    init = repo / "src" / "pkg" / "__init__.py"
    init.write_text(RELEASED.replace("_helper(x: int)", "_helper(x: int, y: int)"))
    (repo / "src" / "pkg" / "gateway.py").write_text("def run(a: int, b: int) -> None:\n    pass\n")

    done = check(repo)

    assert done.returncode == 0, done.stdout + done.stderr


def test_a_reexported_engine_name_is_public_and_leaving_all_is_a_break(repo: Path) -> None:
    init = repo / "src" / "pkg" / "__init__.py"
    init.write_text(RELEASED + '\nfrom pkg.gateway import run\n\n__all__ = ["greet", "run"]\n')
    git(repo, "commit", "-q", "-am", "two")
    git(repo, "tag", "-f", "v1.0.0")
    (repo / "src" / "pkg" / "gateway.py").write_text("def run(a: int, b: int) -> None:\n    pass\n")
    init.write_text(init.read_text().replace('["greet", "run"]', '["run"]'))

    done = check(repo)

    assert done.returncode == 1
    assert "run(b): Parameter was added as required" in done.stdout
    assert "pkg.greet: Public object is no longer exported (__all__)" in done.stdout
    assert done.stderr.startswith("❌ 2 break(s)")


def test_without_a_release_tag_there_is_nothing_to_compare(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")

    done = check(tmp_path)

    assert done.returncode == 0
    assert "no release tag yet" in done.stdout


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A repository whose tag v1.0.0 holds this checkout's contract packages as they are."""
    for package in ("openpista-core", "openpista-testing"):
        source = Path("packages", package, "src")
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / source, tmp_path / source, ignore=ignore)
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n\n## 1.0.0\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "release")
    git(tmp_path, "tag", "v1.0.0")
    return tmp_path


def test_the_real_contract_is_what_is_checked(released: Path) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(CHECK), "--root", str(released)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    unchanged = run()
    core = released / "packages" / "openpista-core" / "src" / "openpista"
    main = core / "cli" / "main.py"  # an engine module; openpista.cli exports its fail()
    main.write_text(main.read_text().replace("def fail(message: str,", "def fail(text: str,"))
    doctor = core / "doctor.py"
    exported = doctor.read_text()
    assert exported.count('"request_json"') == 1  # its entry in __all__
    doctor.write_text(re.sub(r'\s*"request_json",?', "", exported))
    broken = run()

    assert unchanged.stdout == "✓ public API compatible with v1.0.0\n", unchanged.stderr
    assert broken.returncode == 1
    assert "fail(message): Parameter was removed" in broken.stdout
    assert "openpista.doctor.request_json: Public object is no longer exported" in broken.stdout


def test_the_checkout_keeps_the_api_of_its_last_release() -> None:
    done = subprocess.run(
        [sys.executable, str(CHECK)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
