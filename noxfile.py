"""Developer sessions. `scripts/test` runs lint, typecheck and tests in the project's .venv.

Run a session in the project's .venv with `nox --no-venv -s NAME` (its tools and python are
used whatever PATH says), or let nox build its own virtualenv with plain `nox -s NAME`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
EDITABLES = [arg for path in sorted(Path("packages").iterdir()) for arg in ("-e", str(path))]
PACKAGES = [*EDITABLES, "-e", ".[all,dev]", "-c", "constraints.txt"]
BENCHMARKS = ["benchmarks/run.py", *sorted(str(p) for p in Path("benchmarks").glob("bench_*.py"))]


PROJECT_BIN = Path(__file__).resolve().parent / ".venv" / "bin"


def _install(session: nox.Session) -> None:
    if session.venv_backend != "none":
        session.install(*PACKAGES)


def _tool(session: nox.Session, name: str) -> str:
    """``name`` from the project's .venv when running with --no-venv (whatever is first on
    PATH, e.g. a system python without openpista), else from the session's own venv."""
    local = PROJECT_BIN / name
    return str(local) if session.venv_backend == "none" and local.exists() else name


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting, zero warnings."""
    _install(session)
    session.run(_tool(session, "ruff"), "check", ".")
    session.run(_tool(session, "ruff"), "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on core and every plugin package."""
    _install(session)
    session.run(_tool(session, "mypy"))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (SQLite, PostgreSQL) and end-to-end."""
    _install(session)
    session.run(_tool(session, "pytest"), *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Only the end-to-end tests that drive the installed `openpista` command."""
    _install(session)
    session.run(_tool(session, "pytest"), "-m", "e2e", *session.posargs)


@nox.session
def image(session: nox.Session) -> None:
    """Build the container image (Dockerfile) against a private dockerd and run it (minutes)."""
    _install(session)
    session.run(_tool(session, "pytest"), "-p", "no:cacheprovider", "tests/test_image_e2e.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Every script of benchmarks/: start-up, latency, throughput; figures printed."""
    _install(session)
    for script in BENCHMARKS:
        session.run(_tool(session, "python"), script, *session.posargs)
