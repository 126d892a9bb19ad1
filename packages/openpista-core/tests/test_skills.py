"""Skills: discovery, front matter, problems, prompt context, tools and the subprocess runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openpista.models import ToolCall, ToolResult
from openpista.skills.base import Skill, SkillRunner
from openpista.skills.loader import SkillLoader, skill_tools, system_prompt_context
from openpista.skills.subprocess_runner import MAX_ARGV_JSON_BYTES, SubprocessSkillRunner
from openpista.tools.base import ToolError
from openpista.tools.registry import ToolRegistry

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_SKILLS = REPO_ROOT / "skills"


def write_skill(folder: Path, skill_md: str | bytes, files: dict[str, str] | None = None) -> Path:
    """Create a skill folder with ``SKILL.md`` and the other ``files`` (name -> content)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "SKILL.md"
    if isinstance(skill_md, bytes):
        target.write_bytes(skill_md)
    else:
        target.write_text(skill_md)
    for name, content in (files or {}).items():
        (folder / name).write_text(content)
    return folder


def registry_for(skills: list[Skill], timeout: float = 30) -> ToolRegistry:
    runners: dict[str, SkillRunner] = {"subprocess": SubprocessSkillRunner()}
    return ToolRegistry(skill_tools(skills, runners, timeout))


async def call(registry: ToolRegistry, name: str, **arguments: object) -> ToolResult:
    return await registry.dispatch(ToolCall(id="s1", name=name, arguments=arguments))


# --- discovery -----------------------------------------------------------------------------


def test_discovers_nested_skills_and_skips_hidden_and_vendored(tmp_path: Path) -> None:
    write_skill(tmp_path / "top", "---\nname: top\ndescription: Top level.\n---\nBody.")
    write_skill(tmp_path / "a" / "b" / "deep", "---\ndescription: Deep down.\n---\n")
    write_skill(tmp_path / ".hidden" / "secret", "---\nname: secret\n---\n")
    write_skill(tmp_path / "node_modules" / "pkg", "---\nname: vendored\n---\n")
    write_skill(tmp_path / ".venv" / "lib", "---\nname: venv\n---\n")
    scan = SkillLoader(tmp_path).discover()
    assert scan.problems == []
    assert sorted(skill.name for skill in scan.skills) == ["deep", "top"]


def test_front_matter_fields_and_defaults(tmp_path: Path) -> None:
    write_skill(tmp_path / "plain", "# Plain\n\nJust some advice for the LLM.\n\nMore.\n")
    write_skill(
        tmp_path / "full",
        "---\nname: full-skill\ndescription: Does it all.\nmode: docker\nimage: python:3.12\n"
        "parameters:\n  type: object\n  properties:\n    n: {type: integer}\n  required: [n]\n"
        "---\n# Full\nUse it wisely.\n",
        files={"main.py": "print('hi')\n"},
    )
    skills = {skill.name: skill for skill in SkillLoader(tmp_path).discover().skills}
    plain = skills["plain"]
    assert plain.description == "Just some advice for the LLM."
    assert plain.mode == "subprocess"
    assert plain.entry is None
    assert plain.parameters == {"type": "object", "properties": {}, "additionalProperties": True}
    assert plain.body == "# Plain\n\nJust some advice for the LLM.\n\nMore."
    assert plain.path == tmp_path / "plain"
    full = skills["full-skill"]
    assert (full.description, full.mode) == ("Does it all.", "docker")
    assert full.entry == tmp_path / "full" / "main.py"
    assert full.metadata == {"image": "python:3.12"}
    assert full.parameters["required"] == ["n"]
    assert full.body == "# Full\nUse it wisely."


def test_run_sh_is_the_entry_and_an_entry_key_overrides(tmp_path: Path) -> None:
    write_skill(tmp_path / "sh", "---\n---\n", {"run.sh": "echo hi\n"})
    write_skill(tmp_path / "wasm", "---\nmode: wasm\nentry: hello.wasm\n---\n", {"hello.wasm": ""})
    skills = {skill.name: skill for skill in SkillLoader(tmp_path).discover().skills}
    assert skills["sh"].entry == tmp_path / "sh" / "run.sh"
    assert skills["wasm"].entry == (tmp_path / "wasm" / "hello.wasm").resolve()


def test_missing_workspace_means_no_skills(tmp_path: Path) -> None:
    scan = SkillLoader(tmp_path / "nowhere").discover()
    assert (scan.skills, scan.problems) == ([], [])


def test_symlink_loops_are_not_followed_forever(tmp_path: Path) -> None:
    write_skill(tmp_path / "real", "---\nname: real\n---\n")
    (tmp_path / "real" / "loop").symlink_to(tmp_path)
    outside = write_skill(tmp_path.parent / f"{tmp_path.name}-outside" / "linked", "---\n---\n")
    (tmp_path / "linked").symlink_to(outside)
    scan = SkillLoader(tmp_path).discover()
    assert sorted(skill.name for skill in scan.skills) == ["linked", "real"]
    assert scan.problems == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"---\nname: x\n---\n\xff\xfe broken", "not UTF-8 text"),
        ("---\nname: [unclosed\n---\n", "front matter is not valid YAML"),
        (
            "---\n- a\n- list\n---\n",
            "front matter must be a mapping of `key: value` lines, not a list",
        ),
        ("---\nname: x\n", "front matter opened with `---` is never closed"),
        ("---\nname: {a: 1}\n---\n", "`name` must be text"),
        ("---\nparameters: [1]\n---\n", "`parameters` must be a JSON Schema mapping"),
        ("---\nparameters: {type: object, properties: 3}\n---\n", "not a valid JSON Schema"),
        ("---\nentry: ../../etc/passwd\n---\n", "points outside the skill folder"),
    ],
)
def test_broken_skill_is_reported_and_others_still_load(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    write_skill(tmp_path / "good", "---\nname: good\n---\n")
    write_skill(tmp_path / "bad", content)
    scan = SkillLoader(tmp_path).discover()
    assert [skill.name for skill in scan.skills] == ["good"]
    assert len(scan.problems) == 1
    assert scan.problems[0].startswith(f"{tmp_path / 'bad' / 'SKILL.md'}: ")
    assert problem in scan.problems[0]
    assert scan.problems[0].endswith("skill skipped")


def test_yaml_problem_names_the_line(tmp_path: Path) -> None:
    write_skill(tmp_path / "bad", "---\nname: ok\ndescription: [oops\n---\n")
    (problem,) = SkillLoader(tmp_path).discover().problems
    assert "line 4" in problem or "line 3" in problem


def test_directory_named_skill_md_is_reported(tmp_path: Path) -> None:
    (tmp_path / "odd" / "SKILL.md").mkdir(parents=True)
    write_skill(tmp_path / "good", "---\n---\n")
    scan = SkillLoader(tmp_path).discover()
    assert [skill.name for skill in scan.skills] == ["good"]
    assert scan.problems == [
        f"{tmp_path / 'odd' / 'SKILL.md'}: is a directory, not a file; skill skipped"
    ]


def test_duplicate_names_keep_the_first(tmp_path: Path) -> None:
    write_skill(tmp_path / "a", "---\nname: twin\ndescription: first\n---\n")
    write_skill(tmp_path / "b", "---\nname: twin\ndescription: second\n---\n")
    scan = SkillLoader(tmp_path).discover()
    assert [skill.description for skill in scan.skills] == ["first"]
    (problem,) = scan.problems
    assert problem.startswith(f"{tmp_path / 'b' / 'SKILL.md'}: skill name 'twin' is already used")
    assert str(tmp_path / "a" / "SKILL.md") in problem


# --- system prompt context -----------------------------------------------------------------


def test_system_prompt_context(tmp_path: Path) -> None:
    tool_skill = Skill(
        name="word-stats",
        description="Counts words.",
        path=tmp_path,
        body="Use for counting.",
        entry=tmp_path / "main.py",
    )
    advice = Skill(name="style", description="House style.", path=tmp_path, body="x" * 5_000)
    context = system_prompt_context([tool_skill, advice], max_body_chars=100)
    assert context.startswith("## Skills\n")
    assert "### word-stats (tool `skill.word-stats`)\nCounts words.\nUse for counting." in context
    assert "### style (instructions only, not a tool)\nHouse style.\n" + "x" * 100 in context
    assert "[... 4,900 characters omitted ...]" in context
    assert system_prompt_context([]) == ""


# --- skill tools ---------------------------------------------------------------------------


def test_one_tool_per_runnable_skill(tmp_path: Path) -> None:
    runnable = Skill(
        name="a",
        description="Runs.",
        path=tmp_path,
        entry=tmp_path / "run.sh",
        parameters={"type": "object", "properties": {"x": {"type": "string"}}},
    )
    context_only = Skill(name="b", description="Advice.", path=tmp_path)
    tools = skill_tools([runnable, context_only], {}, timeout=5)
    assert [(t.name, t.description) for t in tools] == [("skill.a", "Runs.")]
    assert tools[0].parameters == runnable.parameters


@pytest.mark.parametrize(
    ("mode", "hint"),
    [("docker", "install the openpista-docker plugin"), ("wasm", "openpista-wasm"), ("vm", "")],
)
async def test_unknown_mode_says_what_to_install(tmp_path: Path, mode: str, hint: str) -> None:
    skill = Skill(name="boxed", description="d", path=tmp_path, mode=mode, entry=tmp_path / "x")
    result = await call(registry_for([skill]), "skill.boxed")
    assert result.is_error
    assert f"needs execution mode '{mode}'" in result.output
    assert "available modes: subprocess" in result.output
    assert hint in result.output


async def test_skill_arguments_are_validated_against_the_schema() -> None:
    scan = SkillLoader(EXAMPLE_SKILLS).discover()
    registry = registry_for(scan.skills)
    missing = await call(registry, "skill.word-stats")
    assert missing.is_error
    assert (
        missing.output
        == "invalid arguments for tool skill.word-stats: 'text' is a required property"
    )
    wrong = await call(registry, "skill.word-stats", text="hi", top="ten")
    assert wrong.output == (
        "invalid arguments for tool skill.word-stats: "
        "argument 'top': 'ten' is not of type 'integer'"
    )


# --- the subprocess runner -----------------------------------------------------------------


async def test_example_skills_load_and_run() -> None:
    scan = SkillLoader(EXAMPLE_SKILLS).discover()
    assert scan.problems == []
    names = {skill.name for skill in scan.skills}
    assert {"system-info", "word-stats"} <= names
    registry = registry_for(scan.skills)

    info = await call(registry, "skill.system-info")
    assert not info.is_error, info.output
    keys = [line.split(":", 1)[0] for line in info.output.splitlines()]
    assert keys[:4] == ["os", "kernel", "arch", "hostname"]
    assert "disk" in keys

    text = "The cat sat on the mat.\nThe cat ran!\n\nA dog barked at the cat"
    stats = await call(registry, "skill.word-stats", text=text, top=2)
    assert not stats.is_error, stats.output
    data = json.loads(stats.output)
    assert data["words"] == 15
    assert data["lines"] == 4
    assert data["sentences"] == 3
    assert data["paragraphs"] == 2
    assert data["characters"] == len(text)
    assert data["top_words"] == [["cat", 3], ["sat", 1]]


async def test_arguments_arrive_as_json_in_argv_and_stdin(tmp_path: Path) -> None:
    folder = write_skill(
        tmp_path / "echo",
        "---\nname: echo\n---\n",
        {
            "run.sh": 'printf "argv=%s\\n" "$1"; printf "stdin="; cat; echo; '
            'echo "dir=$OPENPISTA_SKILL_DIR pwd=$PWD"\n'
        },
    )
    (skill,) = SkillLoader(tmp_path).discover().skills
    arguments = {"text": 'héllo "quoted" $HOME', "n": [1, 2]}
    output = await SubprocessSkillRunner().run(skill, arguments, timeout=30)
    argv_line, stdin_line, where = output.splitlines()
    assert json.loads(argv_line.removeprefix("argv=")) == arguments
    assert json.loads(stdin_line.removeprefix("stdin=")) == arguments
    assert where == f"dir={folder} pwd={folder}"


async def test_large_arguments_travel_on_stdin_only(tmp_path: Path) -> None:
    write_skill(
        tmp_path / "big",
        "---\n---\n",
        {
            "main.py": "import json, sys\n"
            "data = json.load(sys.stdin)\n"
            "print(sys.argv[1], len(data['text']))\n"
        },
    )
    (skill,) = SkillLoader(tmp_path).discover().skills
    text = "x" * (MAX_ARGV_JSON_BYTES * 3)
    output = await SubprocessSkillRunner().run(skill, {"text": text}, timeout=30)
    assert output == f"- {len(text)}"


async def test_non_zero_exit_is_an_error_with_stderr(tmp_path: Path) -> None:
    write_skill(
        tmp_path / "bad",
        "---\n---\n",
        {"run.sh": "echo partial; echo 'no such file' >&2; exit 4\n"},
    )
    (skill,) = SkillLoader(tmp_path).discover().skills
    with pytest.raises(ToolError) as caught:
        await SubprocessSkillRunner().run(skill, {}, timeout=30)
    assert str(caught.value) == "skill bad failed with exit code 4; stderr:\nno such file"
    result = await call(registry_for([skill]), "skill.bad")
    assert result.is_error
    assert result.output == str(caught.value)


async def test_timeout_is_an_error(tmp_path: Path) -> None:
    write_skill(tmp_path / "slow", "---\n---\n", {"run.sh": "echo working >&2; sleep 1000\n"})
    (skill,) = SkillLoader(tmp_path).discover().skills
    with pytest.raises(ToolError) as caught:
        await SubprocessSkillRunner(kill_grace=0.5).run(skill, {}, timeout=0.5)
    assert str(caught.value) == "skill slow timed out after 0.5 s and was killed; stderr:\nworking"


def test_builtin_plugin_registers_the_subprocess_runner() -> None:
    from openpista.builtins.skills import register_skill_runners
    from openpista.config import Settings

    found: dict[str, SkillRunner] = {}
    register_skill_runners(found.__setitem__, Settings())
    assert list(found) == ["subprocess"]
    assert isinstance(found["subprocess"], SubprocessSkillRunner)


def test_an_image_means_docker_and_main_wasm_is_an_entry(tmp_path: Path) -> None:
    from openpista.skills.loader import SkillLoader

    boxed = tmp_path / "boxed"
    boxed.mkdir()
    (boxed / "SKILL.md").write_text("---\nname: boxed\nimage: busybox\n---\nRuns in a box.\n")
    (boxed / "run.sh").write_text("echo hi\n")
    wasm = tmp_path / "tiny"
    wasm.mkdir()
    (wasm / "SKILL.md").write_text("---\nname: tiny\nmemory_mb: 8\n---\nTiny.\n")
    (wasm / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    found = {s.name: s for s in SkillLoader(tmp_path).discover().skills}
    assert found["boxed"].mode == "docker"
    assert found["boxed"].metadata == {"image": "busybox"}
    assert found["tiny"].entry == wasm / "main.wasm"
    assert found["tiny"].mode == "wasm", "a .wasm entry means the WASM sandbox"
    assert found["tiny"].metadata == {"memory_mb": 8}
