"""Developer sessions. `scripts/test` runs lint, typecheck and tests in the project's .venv.

Run a session in the current environment with `nox --no-venv -s NAME`, or let nox build
its own virtualenv with plain `nox -s NAME`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
EDITABLES = [arg for path in sorted(Path("packages").iterdir()) for arg in ("-e", str(path))]
PACKAGES = [*EDITABLES, "-e", ".[all,dev]", "-c", "constraints.txt"]
BENCHMARKS = ["benchmarks/run.py", *sorted(str(p) for p in Path("benchmarks").glob("bench_*.py"))]


def _install(session: nox.Session) -> None:
    if session.venv_backend != "none":
        session.install(*PACKAGES)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting, zero warnings."""
    _install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on core and every plugin package."""
    _install(session)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (SQLite, PostgreSQL) and end-to-end."""
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Only the end-to-end tests that drive the installed `openpista` command."""
    _install(session)
    session.run("pytest", "-m", "e2e", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Every script of benchmarks/: start-up, latency, throughput; figures printed."""
    _install(session)
    for script in BENCHMARKS:
        session.run("python", script, *session.posargs)
