"""Directory plugins: manifests checked field by field, install from folders and archives,
remove / enable / disable, and hostile manifests and archives refused with clear errors."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from openpista.home import plugins_dir
from openpista.plugin_dir import (
    DISABLED_MARKER,
    PluginDirError,
    check_folder,
    discover,
    install,
    remove,
    set_enabled,
)

MODULE = b"\0asm\1\0\0\0 not run by these tests"
TOOL = '[[tools]]\nname = "count"\ndescription = "Count words."\n'


def manifest(**fields: Any) -> str:
    values: dict[str, Any] = {
        "name": "textstats",
        "version": "1.0.0",
        "kind": "wasm",
        "module": "textstats.wasm",
        "sha256": hashlib.sha256(MODULE).hexdigest(),
        **fields,
    }
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in values.items()]
    return "\n".join(lines) + "\n"


def plugin_folder(tmp_path: Path, text: str | None = None, name: str = "textstats") -> Path:
    folder = tmp_path / "src" / name
    folder.mkdir(parents=True)
    (folder / "textstats.wasm").write_bytes(MODULE)
    (folder / "plugin.toml").write_text(text if text is not None else manifest() + TOOL)
    return folder


def test_a_good_plugin_installs_lists_disables_and_goes(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    installed = install(plugin_folder(tmp_path), root)
    assert installed.manifest is not None
    assert installed.manifest.tool_name(installed.manifest.tools[0]) == "plugin.textstats.count"
    assert installed.manifest.permissions.network == "none"
    assert [p.name for p in discover(root)] == ["textstats"]
    set_enabled("textstats", False, root)
    assert (root / "textstats" / DISABLED_MARKER).exists()
    assert not discover(root)[0].enabled
    set_enabled("textstats", True, root)
    assert discover(root)[0].enabled
    again = plugin_folder(tmp_path / "again")
    with pytest.raises(PluginDirError, match="installed already"):
        install(again, root)
    install(again, root, replace=True)
    remove("textstats", root)
    assert discover(root) == []
    for bad in ("textstats", "../etc", "a/b"):
        with pytest.raises(PluginDirError, match="no plugin"):
            remove(bad, root)


def test_by_default_plugins_live_in_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path / "state"))
    assert plugins_dir() == tmp_path / "state" / "plugins"
    assert discover() == []  # no directory yet
    install(plugin_folder(tmp_path))
    assert (tmp_path / "state" / "plugins" / "textstats" / "plugin.toml").is_file()
    assert [p.name for p in discover()] == ["textstats"]


def test_the_user_is_asked_before_anything_is_copied(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    shown: list[str] = []
    with pytest.raises(PluginDirError, match="not installed"):
        install(plugin_folder(tmp_path), root, accept=lambda m: shown.append(m.name) or False)
    assert shown == ["textstats"]
    assert not (root / "textstats").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (manifest(), "tools: Field required"),
        (manifest(kind="shared-library") + TOOL, "kind: Input should be 'wasm'"),
        (manifest(sha256="0" * 64) + TOOL, "the SHA-256 of textstats.wasm is"),
        (manifest(module="../evil.wasm") + TOOL, "module: String should match"),
        (manifest(module="other.wasm") + TOOL, "its module other.wasm is not a file there"),
        (manifest(name="Text Stats") + TOOL, "name: String should match"),
        (manifest(colour="blue") + TOOL, "colour: Extra inputs are not permitted"),
        (manifest() + TOOL + TOOL, "two tools share a name"),
        (manifest() + "[permissions]\nread = ['../..']\n" + TOOL, "outside the workspace"),
        (manifest() + "[permissions]\nwrite = ['/etc']\n" + TOOL, "outside the workspace"),
        (manifest() + "[permissions]\nread = ['~/x']\n" + TOOL, "outside the workspace"),
        (manifest() + "[permissions]\nenv = ['OPENAI_API_KEY']\n" + TOOL, "may hold a secret"),
        (manifest() + "[permissions]\nnetwork = 'host'\n" + TOOL, "network: Input should be"),
        (manifest() + "[permissions]\ntimeout = 99999\n" + TOOL, "timeout: Input should be"),
        (manifest() + TOOL + "parameters = { type = 'string' }\n", "must describe an object"),
        ("name = [unclosed", "is not valid TOML"),
    ],
)
def test_hostile_manifests_are_refused_saying_why(tmp_path: Path, text: str, problem: str) -> None:
    folder = plugin_folder(tmp_path, text)
    with pytest.raises(PluginDirError, match="textstats") as refused:
        install(folder, tmp_path / "plugins")
    assert problem in str(refused.value)
    assert not (tmp_path / "plugins" / "textstats").exists()


def test_a_broken_installed_plugin_is_listed_with_its_error(tmp_path: Path) -> None:
    root = tmp_path / "plugins"
    install(plugin_folder(tmp_path), root)
    (root / "textstats" / "textstats.wasm").write_bytes(MODULE + b"tampered")
    [listed] = discover(root)
    assert listed.manifest is None
    assert "changed or damaged" in listed.error
    (root / "textstats" / "textstats.wasm").unlink()
    (root / "textstats" / "textstats.wasm").symlink_to("/etc/hostname")
    assert "is not a file there" in discover(root)[0].error


def test_archives_install_and_hostile_ones_are_refused(tmp_path: Path) -> None:
    folder = plugin_folder(tmp_path)
    tgz, zipped = tmp_path / "p.tar.gz", tmp_path / "p.zip"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(folder, arcname="textstats")
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, path.name)
    assert install(tgz, tmp_path / "a").name == "textstats"
    assert install(zipped, tmp_path / "b").name == "textstats"

    escaping = tmp_path / "escape.tar.gz"
    with tarfile.open(escaping, "w:gz") as archive:
        data = b"owned"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(PluginDirError, match="cannot be unpacked safely"):
        install(escaping, tmp_path / "c")
    assert not (tmp_path / "outside.txt").exists()

    linked = tmp_path / "link.zip"
    with zipfile.ZipFile(linked, "w") as archive:
        info = zipfile.ZipInfo("textstats.wasm")
        info.external_attr = 0o120777 << 16  # a symbolic link
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(PluginDirError, match="leaves the folder"):
        install(linked, tmp_path / "d")
    (tmp_path / "p.rar").write_bytes(b"x")
    with pytest.raises(PluginDirError, match="install a folder"):
        install(tmp_path / "p.rar", tmp_path / "e")


def test_check_folder_reads_the_committed_example() -> None:
    example = Path(__file__).resolve().parents[3] / "plugins" / "textstats"
    checked = check_folder(example)
    assert [t.name for t in checked.tools] == ["count", "peek"]
    assert checked.permissions.read == ["notes"]
