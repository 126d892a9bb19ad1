"""The release workflow, checked without running it: triggers, job order, permissions
(OIDC only where publishing happens, no stored secrets), and that every script and test it
calls exists and the artifact it tests is the one it publishes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return result


def uses(workflow: dict[Any, Any], job: str, action: str) -> list[dict[str, Any]]:
    return [s for s in steps(workflow, job) if s.get("uses", "").startswith(action + "@")]


def test_it_runs_on_version_tags_only(workflow: dict[Any, Any]) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers == {"push": {"tags": ["v*"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_publishing_waits_for_the_tests_of_the_built_files(workflow: dict[Any, Any]) -> None:
    jobs = workflow["jobs"]
    assert set(jobs) == {"build", "test", "publish"}
    assert jobs["test"]["needs"] == "build"
    assert jobs["publish"]["needs"] == "test"
    assert all(job["timeout-minutes"] <= 30 for job in jobs.values())


def test_only_the_publish_job_may_ask_for_an_identity_token(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert jobs["publish"]["permissions"] == {"id-token": "write"}
    assert jobs["publish"]["environment"] == "release"
    assert [name for name, job in jobs.items() if "permissions" in job] == ["publish"]
    text = WORKFLOW.read_text()
    assert "secrets." not in text  # trusted publishing: no stored token or password
    (publish,) = uses(workflow, "publish", "pypa/gh-action-pypi-publish")
    assert publish["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert set(publish["with"]) == {"packages-dir"}
    assert not any("run" in step for step in steps(workflow, "publish"))  # nothing but upload


def test_the_tested_artifact_is_the_published_one(workflow: dict[Any, Any]) -> None:
    (upload,) = uses(workflow, "build", "actions/upload-artifact")
    assert upload["with"]["if-no-files-found"] == "error"
    for job in ("test", "publish"):
        (download,) = uses(workflow, job, "actions/download-artifact")
        assert download["with"]["name"] == upload["with"]["name"]
        assert download["with"]["path"] == upload["with"]["path"]
    (publish,) = uses(workflow, "publish", "pypa/gh-action-pypi-publish")
    assert publish["with"]["packages-dir"] == upload["with"]["path"]
    test_runs = [s["run"] for s in steps(workflow, "test") if "run" in s]
    assert any(
        f"OPENPISTA_DIST={upload['with']['path'].rstrip('/')} " in run
        and "tests/test_release_artifacts.py" in run
        for run in test_runs
    )


def test_every_script_and_test_it_calls_exists(workflow: dict[Any, Any]) -> None:
    runs = " ".join(
        s["run"] for job in workflow["jobs"] for s in steps(workflow, job) if "run" in s
    )
    called = set(re.findall(r"(?:scripts|tests)/[\w./-]+", runs))
    assert {
        "scripts/install",
        "scripts/release",
        "scripts/build-dists",
        "scripts/api-check",
    } <= called
    for path in called:
        assert (REPO / path).is_file(), path
    assert "--check" in runs  # the tag must match the one version of every distribution


def test_actions_are_pinned_and_python_matches_the_project(workflow: dict[Any, Any]) -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = requires.removeprefix(">=")
    for job in workflow["jobs"]:
        for step in steps(workflow, job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+|release/v\d+)", step["uses"]), step
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"]["python-version"] == minimum


def test_the_api_is_compared_with_the_previous_tag(workflow: dict[Any, Any]) -> None:
    (checkout, *_) = uses(workflow, "build", "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # a shallow clone has no tags
    runs = [s["run"] for s in steps(workflow, "build") if "run" in s]
    (check,) = [run for run in runs if "scripts/api-check" in run]
    assert '--against "$previous"' in check
    assert runs.index(check) < next(i for i, r in enumerate(runs) if "build-dists" in r)


def test_the_docs_say_what_to_trust_on_the_registry_for_every_distribution(
    workflow: dict[Any, Any],
) -> None:
    docs = (REPO / "docs" / "release.md").read_text()
    section = docs.split("### Trusted publishing", 1)[1].split("\n## ", 1)[0]
    assert f"workflow file `{WORKFLOW.name}`" in section
    assert f"environment `{workflow['jobs']['publish']['environment']}`" in section
    pyprojects = [REPO / "pyproject.toml", *sorted(REPO.glob("packages/*/pyproject.toml"))]
    names = {tomllib.loads(p.read_text())["project"]["name"] for p in pyprojects}
    listed = set(re.findall(r"`(openpista(?:-[a-z]+)?)`", section))
    assert names == listed
