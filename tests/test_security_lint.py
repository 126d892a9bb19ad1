"""The ruff ``S`` (bandit) audit is part of the lint: a new finding in a package's source
fails it, tests and emulators are out of it, and every justification names its reason."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
RISKY = """import subprocess


def run(command: str) -> None:
    subprocess.run(command, shell=True)
"""


def lint(path: str, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), "check", "--no-cache", "--output-format", "concise",
         "--stdin-filename", path, "-"],
        input=source, capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip


def test_a_new_finding_in_package_source_fails_the_lint() -> None:
    for path in (
        "packages/openpista-core/src/openpista/risky.py",
        "packages/openpista-telegram/src/openpista_telegram/risky.py",
    ):
        done = lint(path, RISKY)

        assert done.returncode == 1, path
        assert "S602" in done.stdout, done.stdout


def test_tests_and_emulators_are_out_of_the_audit() -> None:
    for path in (
        "tests/test_risky.py",
        "packages/openpista-core/tests/test_risky.py",
        "packages/openpista-telegram/src/openpista_telegram/testing.py",
        "packages/openpista-testing/src/openpista_testing/risky.py",
    ):
        assert lint(path, RISKY).returncode == 0, path


def bare_justifications(sources: list[Path]) -> list[str]:
    """``path:line`` of every ``# noqa: S###`` in ``sources`` that gives no reason."""
    bare = []
    for source in sources:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            for match in re.finditer(r"# noqa: (S\d+[, S\d]*)(.*)$", line):
                if len(match[2].strip()) < 8:
                    bare.append(f"{source.relative_to(REPO)}:{number}")
    return bare


def test_every_justification_names_its_reason() -> None:
    assert bare_justifications(list(REPO.glob("packages/*/src/**/*.py"))) == []


def maintainer_scripts() -> list[Path]:
    """The Python programs under scripts/ (no ``.py`` suffix: ``ruff check .`` skips them)."""
    return [
        path
        for path in sorted((REPO / "scripts").iterdir())
        if path.is_file() and path.read_text(errors="replace").startswith("#!/usr/bin/env python")
    ]


def test_the_maintainer_scripts_pass_the_audit_too() -> None:
    scripts = maintainer_scripts()
    assert {"release", "build-dists", "api-check"} <= {p.name for p in scripts}
    done = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "S", "--output-format", "concise",
         *map(str, scripts)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert bare_justifications(scripts) == []
