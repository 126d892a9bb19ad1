"""Run the installed ``openpista`` command in an isolated home, pointed at the LLM emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista_testing.emulator import LlmEmulator

OPENPISTA = Path(sys.executable).parent / "openpista"
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "TOGETHERAI_API_KEY",
    "TOGETHER_API_KEY",
    "OPENROUTER_API_KEY",
)


def emulator_settings(emulator: LlmEmulator, home: Path, agent_options: str = "") -> Settings:
    """The :func:`emulator_config` file as :class:`Settings`, for in-process tests."""
    from openpista.config import Settings

    return Settings(**tomllib.loads(emulator_config(emulator, home, agent_options)))


def channel_settings(emulator: LlmEmulator, home: Path) -> Settings:
    """:func:`emulator_settings` for a channel served by a gateway: a failed channel restarts
    within a second, remote chats may use tools (an approval request waits 30 s)."""
    from openpista.config import GatewaySettings, PolicySettings

    settings = emulator_settings(emulator, home)
    settings.gateway = GatewaySettings(restart_max_delay=1)
    settings.policy = PolicySettings(remote="allow", approval_timeout=30)
    return settings


def emulator_config(emulator: LlmEmulator, home: Path, agent_options: str = "") -> str:
    """A config file that sends every request to ``emulator`` through the ``openai`` preset."""
    return f"""
[agent]
provider = "openai"
workspace = "{home / "workspace"}"
{agent_options}

[database]
url = "sqlite+aiosqlite:///{home / "memory.db"}"

[providers.openai]
api_key = "test-key"
base_url = "{emulator.openai_base_url}"
model = "gpt-4o-mini"
timeout = 20
retry_base_delay = 0
"""


@dataclass
class Cli:
    """The ``openpista`` command with its own home, config file and environment.

    Provider key variables and ``OPENPISTA_*`` variables of the calling environment are
    removed; installed plugins are not loaded unless ``env`` says otherwise.
    """

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @classmethod
    def isolated(
        cls, home: Path, emulator: LlmEmulator | None = None, agent_options: str = ""
    ) -> Cli:
        """A CLI whose home is ``home``; with ``emulator``, configured to use it."""
        (home / "workspace").mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in KEY_VARIABLES and not k.startswith("OPENPISTA_")
        }
        cli = cls(home=home, env=env)
        env.update(HOME=str(home), OPENPISTA_CONFIG=str(cli.config), OPENPISTA_LOAD_PLUGINS="")
        if emulator is not None:
            cli.config.write_text(emulator_config(emulator, home, agent_options))
        return cli

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``openpista ARGS`` and return the finished process (never raises on exit code)."""
        return subprocess.run(
            [str(OPENPISTA), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def write_config(self, text: str) -> None:
        """Replace the config file."""
        self.config.write_text(text)
