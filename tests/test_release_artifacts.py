"""The built artifacts: every distribution's wheel and sdist built offline and passing
``twine check``, then installed into a clean venv from those files only (third-party
dependencies from a wheelhouse repacked from this environment) and run: ``openpista
plugins`` and ``openpista run`` against the LLM emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter, outside any venv
PROJECTS = [REPO, *sorted(p.parent for p in REPO.glob("packages/*/pyproject.toml"))]


def run(*command: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every wheel and sdist, built by scripts/build-dists (which runs twine check); or
    those in $OPENPISTA_DIST, built before (the release workflow tests the files it uploads)."""
    if os.environ.get("OPENPISTA_DIST"):
        return Path(os.environ["OPENPISTA_DIST"]).resolve()
    out = tmp_path_factory.mktemp("dist")
    done = run(sys.executable, REPO / "scripts" / "build-dists", out)
    assert "twine check passed" in done.stdout
    return out


@pytest.fixture(scope="module")
def clean_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv without site packages and without pip, with ``openpista[telegram]`` installed
    from ``dist`` and a wheelhouse only (``--no-index``: no registry)."""
    base = tmp_path_factory.mktemp("clean")
    wheels = base / "wheels"
    run(
        sys.executable,
        REPO / "scripts" / "wheelhouse",
        wheels,
        "openpista-core[postgres]",
        "openpista-telegram",
    )
    target = base / "venv"
    venv.create(target, with_pip=False, system_site_packages=False)
    run(
        sys.executable, "-m", "pip", "--python", target / "bin" / "python", "install",
        "--quiet", "--no-compile", "--no-index", "--find-links", wheels, "--find-links", dist,
        "openpista[telegram]",
    )  # fmt: skip
    return target


def test_every_distribution_has_a_wheel_and_an_sdist(dist: Path) -> None:
    version = run(sys.executable, REPO / "scripts" / "release", "--check").stdout.split()[-1]
    built = {p.name for p in dist.iterdir()}
    for project in PROJECTS:
        name = "openpista" if project == REPO else project.name.replace("-", "_")
        assert f"{name}-{version}-py3-none-any.whl" in built, name
        assert f"{name}-{version}.tar.gz" in built, name
    assert len(built) == 2 * len(PROJECTS)
    with tarfile.open(dist / f"openpista-{version}.tar.gz") as meta:
        names = {Path(n).name for n in meta.getnames()}
    assert names == {"PKG-INFO", "pyproject.toml", "README.md",
                     "LICENSE-MIT", "LICENSE-APACHE", ".gitignore"}  # fmt: skip


def test_the_clean_venv_runs_the_built_openpista(
    clean_venv: Path, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    python, openpista = clean_venv / "bin" / "python", clean_venv / "bin" / "openpista"
    probe = "import openpista, openpista_telegram, sys; print(openpista.__file__, *sys.path)"
    where = run(python, "-c", probe).stdout
    assert str(REPO) not in where  # no source tree, no editable install on the path
    assert where.startswith(str(clean_venv))
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    env = {k: v for k, v in cli.env.items() if k != "OPENPISTA_LOAD_PLUGINS"}

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(openpista), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=120, check=False,
        )  # fmt: skip

    plugins = command("plugins")
    assert plugins.returncode == 0, plugins.stderr
    assert "telegram  (openpista-telegram " in plugins.stdout
    assert "❌" not in plugins.stdout
    llm_emulator.reply_text("built and installed")
    answered = command("run", "-e", "are you the built one?")
    assert answered.returncode == 0, answered.stderr
    assert "built and installed" in answered.stdout
    assert llm_emulator.requests[-1].json["messages"][-1]["content"] == "are you the built one?"
    assert os.path.exists(tmp_path / "home" / "memory.db")


def test_the_single_file_build_runs_from_a_temp_dir(
    clean_venv: Path, dist: Path, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    """The zipapp of docs/release.md: shiv packs the clean venv's site-packages (the built
    files only) into one file that a plain python3 runs, without a venv."""
    pyz = tmp_path / "openpista.pyz"
    site = next((clean_venv / "lib").glob("python3*/site-packages"))
    run(
        Path(sys.executable).parent / "shiv", "--quiet", "--console-script", "openpista",
        "--output-file", pyz, "--site-packages", site, "--no-index", "--find-links", dist,
        "--no-deps", "openpista",
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    env = {**cli.env, "SHIV_ROOT": str(tmp_path / "shiv"), "OPENPISTA_LOAD_PLUGINS": "telegram"}
    llm_emulator.reply_text("one file")

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BASE_PYTHON), str(pyz), *args], capture_output=True, text=True, env=env,
            cwd=elsewhere, timeout=180, check=False,
        )  # fmt: skip

    plugins = command("plugins")
    assert plugins.returncode == 0, plugins.stderr
    assert "telegram  (openpista-telegram " in plugins.stdout
    answered = command("run", "-e", "hello")
    assert answered.returncode == 0, answered.stderr
    assert "one file" in answered.stdout
