"""Docker skills run as docs/skills.md says: JSON arguments as the first argument and on
stdin, working directory the skill folder (``/skill``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from openpista.skills.loader import load_skill
from openpista.skills.subprocess_runner import MAX_ARGV_JSON_BYTES
from openpista_docker.runner import DockerSkillRunner
from openpista_docker.sandbox import DockerSandbox

RUN_SH = """echo "argv: $1"
echo "stdin: $(cat)"
echo "cwd: $(pwd), skill at $OPENPISTA_SKILL_DIR"
"""


def write_skill(folder: Path, image: str, script: str = RUN_SH) -> Path:
    folder.mkdir(mode=0o755)
    (folder / "SKILL.md").write_text(f"---\ndescription: Echo.\nimage: {image}\n---\nEcho.\n")
    (folder / "run.sh").write_text(script)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder / "SKILL.md"


@pytest.mark.parametrize("fallback", [False, True])
async def test_a_docker_skill_gets_its_arguments_on_stdin_and_runs_in_its_folder(
    make_sandbox: Callable[..., DockerSandbox], image: str, tmp_path: Path, fallback: bool
) -> None:
    options = {"docker_host": f"unix://{tmp_path}/none.sock", "fallback": "subprocess"}
    sandbox = make_sandbox(**(options if fallback else {}))
    skill = load_skill(write_skill(tmp_path / "echo", image))
    output = await DockerSkillRunner(lambda: sandbox).run(skill, {"text": "héllo"}, timeout=30)
    arguments = json.dumps({"text": "héllo"}, ensure_ascii=False)
    folder = str(skill.path) if fallback else "/skill"
    assert f"argv: {arguments}\nstdin: {arguments}\ncwd: {folder}, skill at {folder}" in output


async def test_large_arguments_travel_on_stdin_only(
    sandbox: DockerSandbox, image: str, tmp_path: Path
) -> None:
    script = 'echo "argv: $1"; echo "stdin: $(wc -c) bytes"\n'
    skill = load_skill(write_skill(tmp_path / "echo", image, script))
    arguments = {"text": "x" * (MAX_ARGV_JSON_BYTES + 10)}
    output = await DockerSkillRunner(lambda: sandbox).run(skill, arguments, timeout=30)
    assert output == f"argv: -\nstdin: {len(json.dumps(arguments))} bytes"
