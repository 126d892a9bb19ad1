"""The ``container.run`` tool: run a command in a fresh, isolated container."""

# No ``from __future__ import annotations``: the tool's annotations are evaluated by the
# ``@tool`` decorator and refer to names of the factory.

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from openpista.tools import Tool, ToolError, ToolOutput, current_turn, tool
from openpista_docker.layout import OUT_DIR, WORKSPACE_DIR
from openpista_docker.render import attachments, check_memory, render
from openpista_docker.settings import DockerSettings

if TYPE_CHECKING:
    from openpista_docker.sandbox import DockerSandbox

NAME = "container.run"
DESCRIPTION = (
    "Run a shell command (`sh -c`) in a fresh, isolated Docker container that is destroyed "
    "afterwards: use it for heavy or risky work. The container has no network, sees the "
    f"workspace read-only at {WORKSPACE_DIR}, runs as an unprivileged user with CPU, memory, "
    f"process and time limits, and can write to /tmp and {OUT_DIR}. Returns the exit code, "
    f"stdout and stderr (long output is cut in the middle) and the files left in {OUT_DIR} "
    "(attached). Images: {images} (the first is the default); time limit: {timeout:g} s "
    "(also the most you may ask)."
)


def make_container_run_tool(
    settings: DockerSettings, sandbox: Callable[[], "DockerSandbox"]
) -> Tool:
    """Build ``container.run`` with the defaults of ``settings``; its calls run in
    ``sandbox()``, first called (and the sandbox's modules loaded) by the first call."""
    allowed = settings.allowed_images()
    described = DESCRIPTION.format(images=", ".join(allowed), timeout=settings.timeout)

    @tool(NAME, description=described)
    async def container_run(
        command: Annotated[str, Field(description="The shell command line to run.")],
        image: Annotated[
            str | None, Field(min_length=1, description="Container image: one of those listed.")
        ] = None,
        # The LLM-facing argument; the sandbox kills the container when it expires.
        timeout: Annotated[  # noqa: ASYNC109
            float | None,
            Field(
                gt=0,
                allow_inf_nan=False,
                description="Seconds before the container is killed (at most the default).",
            ),
        ] = None,
        workdir: Annotated[
            str | None,
            Field(description=f"Working directory inside the container (default {WORKSPACE_DIR})."),
        ] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables.")
        ] = None,
    ) -> ToolOutput:
        if not command.strip():
            raise ToolError("command is empty")
        if workdir is not None and not workdir.startswith("/"):
            raise ToolError(
                f"workdir must be an absolute path inside the container, not {workdir!r}"
            )
        overrides: dict[str, object] = {}
        notes = []
        if image is not None:
            if image not in allowed:  # never pull (or run) an image the operator did not name
                raise ToolError(
                    f"image {image!r} is not allowed; use one of: {', '.join(allowed)} "
                    "(the operator adds images to [tools.docker] images)"
                )
            overrides["image"] = image
        if timeout is not None:
            # The configured limit is a ceiling: the LLM may only ask for less.
            if timeout > settings.timeout:
                notes.append(
                    f"note: a time limit of {timeout:g} s was asked for; the configured "
                    f"maximum of {settings.timeout:g} s applies"
                )
            overrides["timeout"] = min(timeout, settings.timeout)
        from openpista_docker.sandbox import TaskSpec

        limits = settings.limits().model_copy(update=overrides)
        spec = TaskSpec(
            argv=["/bin/sh", "-c", command],
            limits=limits,
            workdir=workdir,
            env=dict(env or {}),
            host_argv=["/bin/sh", "-c", command],
        )
        turn = current_turn()
        result = await sandbox().run(
            spec, turn.session_id if turn else "container.run", turn.channel_id if turn else ""
        )
        check_memory(result, limits, settings.max_output_chars)
        return ToolOutput(
            text="\n".join([*notes, render(result, limits, settings.max_output_chars)]),
            attachments=attachments(result),
        )

    async def warn(arguments: dict[str, object]) -> str | None:
        return await sandbox().unsandboxed_warning()

    return replace(container_run, approval_warning=warn)
