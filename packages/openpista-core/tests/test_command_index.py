"""``openpista --help`` lists plugin commands from its index while nothing they came from
changed: real ``openpista`` processes with a plugin installed on their ``PYTHONPATH``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openpista.cli.command_index import index_name

PLUGIN = '''
import click

from openpista import hookimpl

{crash}

@click.command()
def fake() -> None:
    """{help}"""


@hookimpl
def register_commands(cli):
    cli.add_command(fake)
'''


MODULES = "--modules at exit--"


class Install:
    """A plugin distribution ``fakeplug`` in ``site`` and an openpista home for it."""

    def __init__(self, root: Path) -> None:
        self.site, self.home = root / "site", root / "home"
        self.site.mkdir()
        self.metadata = self.site / "fakeplug-1.0.dist-info"
        self.metadata.mkdir()
        (self.metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\n")
        (self.metadata / "entry_points.txt").write_text("[openpista]\nfake = fakeplug_mod\n")
        self.module = self.site / "fakeplug_mod.py"
        self.write("First help line.")
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENPISTA_", "PYTHON"))
        }
        self.env |= {
            "PYTHONPATH": str(self.site),
            "OPENPISTA_HOME": str(self.home),
            "OPENPISTA_LOAD_PLUGINS": "fake",
        }

    @property
    def index(self) -> Path:
        return self.home / "cache" / index_name(self.env["OPENPISTA_LOAD_PLUGINS"])

    def write(self, help_text: str, crash: str = "") -> None:
        stamp = self.module.stat().st_mtime_ns if self.module.exists() else 0
        self.module.write_text(PLUGIN.format(help=help_text, crash=crash))
        later = max(stamp + 1_000_000_000, self.module.stat().st_mtime_ns)
        os.utime(self.module, ns=(later, later))  # a new time even within the clock's grain

    def help(self) -> tuple[str, str, set[str]]:
        """``openpista --help``: its output, its stderr, the modules it imported (read from
        sys.modules at exit: ``-X importtime`` misses what ``import_module`` loads)."""
        done = subprocess.run(
            [sys.executable, "-c", HELP],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        errors, _, modules = done.stderr.partition(MODULES)
        assert done.returncode == 0, errors
        return done.stdout, errors, set(modules.split())


HELP = f"""
import atexit, sys
atexit.register(lambda: print({MODULES!r}, *sys.modules, file=sys.stderr))
sys.argv = ["openpista", "--help"]
from openpista.cli.main import main
main()
"""


@pytest.fixture
def install(tmp_path: Path) -> Install:
    return Install(tmp_path)


def listed(output: str) -> dict[str, str]:
    section = output.split("Commands:\n", 1)[1]
    return dict(line.strip().split(None, 1) for line in section.splitlines() if line.strip())


def test_the_second_listing_imports_no_plugin_and_says_the_same(install: Install) -> None:
    first, _, loaded = install.help()
    assert listed(first)["fake"] == "First help line."
    assert {"fakeplug_mod", "openpista.plugins", "pluggy"} <= loaded
    assert install.index.exists()
    assert install.index.stat().st_mode & 0o777 == 0o600
    second, _, loaded = install.help()
    assert second == first
    assert not {"fakeplug_mod", "openpista.plugins", "pluggy"} & loaded


def test_an_edited_plugin_a_removed_one_and_another_selection_are_seen_at_once(
    install: Install,
) -> None:
    install.help()
    install.write("Second help line.")
    assert listed(install.help()[0])["fake"] == "Second help line."
    install.env["OPENPISTA_LOAD_PLUGINS"] = ""
    assert "fake" not in listed(install.help()[0])
    install.env["OPENPISTA_LOAD_PLUGINS"] = "fake"
    assert listed(install.help()[0])["fake"] == "Second help line."
    (install.metadata / "entry_points.txt").unlink()
    assert "fake" not in listed(install.help()[0])
    # Another distribution installed beside it (a new directory in the site): seen at once.
    install.env["OPENPISTA_LOAD_PLUGINS"] = "other"
    assert "fake" not in listed(install.help()[0])
    other = install.site / "otherplug-1.0.dist-info"
    other.mkdir()
    (other / "entry_points.txt").write_text("[openpista]\nother = fakeplug_mod\n")
    assert listed(install.help()[0])["fake"] == "Second help line."


def test_a_broken_plugins_warning_is_shown_every_time(install: Install) -> None:
    install.write("Never listed.", crash="raise RuntimeError('plugin broke')")
    for _ in range(2):
        output, errors, _ = install.help()
        assert "fake" not in listed(output)
        assert "warning: plugin fake: failed to import: RuntimeError: plugin broke" in errors


@pytest.mark.parametrize(
    "index",
    [
        b"\xff\xfe not json",
        b"[]",
        b'{"installed": 1}',
        b"null",
        json.dumps({"installed": [], "files": [], "rows": 5, "warnings": None}).encode(),
    ],
)
def test_a_damaged_index_is_rebuilt(install: Install, index: bytes) -> None:
    install.index.parent.mkdir(parents=True)
    install.index.write_bytes(index)
    assert listed(install.help()[0])["fake"] == "First help line."
    assert json.loads(install.index.read_text())["rows"] == [["fake", "First help line."]]


def test_a_forged_current_index_cannot_put_control_characters_on_the_terminal(
    install: Install,
) -> None:
    install.help()
    index = json.loads(install.index.read_text())
    index["rows"] = [["fake", "\x1b]0;owned\x07 cleared"]]
    install.index.write_text(json.dumps(index))
    output = install.help()[0]
    assert "\x1b" not in output
    assert listed(output)["fake"] == "First help line."


def test_an_index_that_cannot_be_written_only_costs_the_plugin_load(install: Install) -> None:
    install.home.mkdir()
    (install.home / "cache").write_text("a file where the cache directory would be")
    for _ in range(2):
        output, _, loaded = install.help()
        assert listed(output)["fake"] == "First help line."
        assert "fakeplug_mod" in loaded
