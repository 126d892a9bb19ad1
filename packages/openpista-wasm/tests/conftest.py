"""Fixtures of openpista-wasm's tests: real WASI modules built from C with Debian's clang.

clang (``clang lld wasi-libc libclang-rt-14-dev-wasm32``, see ../debian-packages) is a test
dependency: without it the guest builds fail, they are never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openpista.skills.base import Skill
from openpista.skills.loader import load_skill
from openpista_wasm.runner import WasmSkillRunner
from openpista_wasm.settings import WasmSettings

GUESTS = Path(__file__).parent / "guests"
REPO_ROOT = Path(__file__).resolve().parents[3]
HELLO = REPO_ROOT / "skills" / "hello-wasm"
CLANG_WASI = ["clang", "--target=wasm32-wasi", "-O2", "-s"]
"""The build command of skills/README.md."""


def build_wasm(source: Path, output: Path) -> Path:
    """Compile a C file to a WASI command module; a failed build fails the test."""
    done = subprocess.run(
        [*CLANG_WASI, "-o", str(output), str(source)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"clang failed for {source.name}:\n{done.stderr}"
    return output


@pytest.fixture(scope="session")
def clang_build() -> Callable[[Path, Path], Path]:
    """``build(source, output)``: compile C to WASI with the command of skills/README.md."""
    return build_wasm


@pytest.fixture(scope="session")
def guests(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Builds ``guests/<name>.c`` once per session and returns the ``.wasm`` path."""
    out = tmp_path_factory.mktemp("guests")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_wasm(GUESTS / f"{name}.c", out / f"{name}.wasm")
        return built[name]

    return get


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace holding one text file, ``notes.txt``."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "notes.txt").write_text("first line of the notes\nsecond line\n")
    return folder


@pytest.fixture
def make_skill(workspace: Path) -> Callable[..., Skill]:
    """Puts a ``mode: wasm`` skill running ``wasm`` into the workspace and loads it."""

    def make(name: str, wasm: Path, front_matter: str = "") -> Skill:
        folder = workspace / "skills" / name
        folder.mkdir(parents=True)
        shutil.copy(wasm, folder / wasm.name)
        (folder / "SKILL.md").write_text(
            f"---\nname: {name}\nmode: wasm\nentry: {wasm.name}\n{front_matter}---\nA test.\n"
        )
        return load_skill(folder / "SKILL.md")

    return make


@pytest.fixture
def runner(workspace: Path, tmp_path: Path) -> Iterator[WasmSkillRunner]:
    """A runner for ``workspace`` with its module cache in the test's temp dir."""
    wasm_runner = WasmSkillRunner(WasmSettings(cache_dir=tmp_path / "cache"), workspace)
    yield wasm_runner
    wasm_runner.close()


@pytest.fixture
def hello() -> Skill:
    """The committed example skill, skills/hello-wasm."""
    return load_skill(HELLO / "SKILL.md")
