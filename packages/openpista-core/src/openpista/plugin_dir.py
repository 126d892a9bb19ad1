"""Directory plugins: folders under ``~/.openpista/plugins/`` with a ``plugin.toml``.

Python plugins are distributions found through entry points; a *directory plugin* is a
sandboxed WebAssembly module with a manifest, installed by ``openpista plugins install``
and loaded (and reloaded when it changes) by the wasm plugin, which runs its tools. This
module reads and checks them; nothing here runs a module.

``plugin.toml``::

    name = "weather"                 # lower case, digits, '-'; the folder's name
    version = "1.0.0"
    description = "Weather from files the user keeps in the workspace."
    kind = "wasm"
    module = "weather.wasm"          # a file of the folder
    sha256 = "<64 hex digits of the module>"

    [permissions]
    read = ["forecasts"]             # workspace directories the module may read
    write = []                       # workspace directories it may write
    env = ["TZ"]                     # environment variables it sees
    timeout = 10                     # seconds per call
    memory_mb = 64
    network = "none"                 # the only choice in this version

    [[tools]]
    name = "today"                   # the LLM sees plugin.weather.today
    description = "Today's forecast."
    parameters = { type = "object", properties = { city = { type = "string" } } }

A manifest is data from whoever wrote the plugin: every field is checked (unknown keys
refused), paths must stay inside the workspace, and the module's SHA-256 must match.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from openpista.home import plugins_dir
from openpista.tools.schema import object_schema

MANIFEST = "plugin.toml"
DISABLED_MARKER = ".disabled"
MAX_MODULE_BYTES = 64 * 2**20
MAX_MANIFEST_BYTES = 256 * 1024
MAX_ARCHIVE_BYTES = 128 * 2**20
_NAME = r"^[a-z][a-z0-9-]{0,39}$"
_TOOL_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


class PluginDirError(Exception):
    """A directory plugin that cannot be installed or loaded; the message says why."""


def _workspace_path(value: str) -> str:
    """A relative path inside the workspace: no absolute path, no ``..``, no ``~``."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or value.startswith("~"):
        raise ValueError(f"{value!r} is outside the workspace (give a relative path in it)")
    if "\\" in value or "\x00" in value:
        raise ValueError(f"{value!r} is not a plain relative path")
    return str(path)


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    if value.startswith("OPENPISTA") or value.endswith(("KEY", "TOKEN", "SECRET", "PASSWORD")):
        raise ValueError(f"{value!r} may hold a secret of openpista's; plugins do not get it")
    return value


WorkspacePath = Annotated[str, AfterValidator(_workspace_path)]


class Permissions(BaseModel):
    """What a plugin's module may touch; the user sees and accepts it at install."""

    model_config = ConfigDict(extra="forbid")

    read: list[WorkspacePath] = Field(default_factory=list, max_length=16)
    write: list[WorkspacePath] = Field(default_factory=list, max_length=16)
    env: list[Annotated[str, AfterValidator(_env_name)]] = Field(
        default_factory=list, max_length=32
    )
    timeout: float = Field(default=10.0, gt=0, le=300)
    memory_mb: int = Field(default=64, ge=1, le=4096)
    network: Literal["none"] = "none"


class ToolManifest(BaseModel):
    """One tool of a plugin."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_TOOL_NAME)
    description: str = Field(min_length=1, max_length=2000)
    parameters: Annotated[dict[str, Any], AfterValidator(object_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class PluginManifest(BaseModel):
    """A ``plugin.toml``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    version: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    kind: Literal["wasm"]
    module: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.wasm$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    permissions: Permissions = Field(default_factory=Permissions)
    tools: list[ToolManifest] = Field(min_length=1, max_length=64)

    def tool_name(self, tool: ToolManifest) -> str:
        """The name the LLM sees: ``plugin.<plugin>.<tool>``."""
        return f"plugin.{self.name}.{tool.name}"


@dataclass(frozen=True)
class DirectoryPlugin:
    """A folder of the plugins directory: its manifest, or why it cannot be loaded."""

    folder: Path
    manifest: PluginManifest | None
    enabled: bool
    error: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest is not None else self.folder.name

    @property
    def module(self) -> Path:
        assert self.manifest is not None  # noqa: S101  an invariant for mypy, not a check
        return self.folder / self.manifest.module


def read_plugin(folder: Path) -> DirectoryPlugin:
    """The plugin in ``folder``; a problem becomes its :attr:`~DirectoryPlugin.error`."""
    enabled = not (folder / DISABLED_MARKER).exists()
    try:
        manifest = check_folder(folder)
    except PluginDirError as exc:
        return DirectoryPlugin(folder, None, enabled, str(exc))
    if manifest.name != folder.name:
        problem = f"its manifest names it {manifest.name!r}, its folder is {folder.name!r}"
        return DirectoryPlugin(folder, None, enabled, problem)
    return DirectoryPlugin(folder, manifest, enabled)


def stamp(root: Path | None = None) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """What changes when any plugin does (a file added, written, removed; enabled or
    disabled), from directory listings and file times only: cheap enough to poll, where
    :func:`discover` reads and hashes every module."""
    root = root or plugins_dir()
    if not root.is_dir():
        return []
    stamps = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        with os.scandir(folder) as entries:
            for entry in entries:
                status = entry.stat(follow_symlinks=False)
                files.append((entry.name, status.st_mtime_ns, status.st_size))
        stamps.append((folder.name, sorted(files)))
    return stamps


def discover(root: Path | None = None) -> list[DirectoryPlugin]:
    """Every plugin folder of ``root`` (default :func:`plugins_dir`), by name."""
    root = root or plugins_dir()
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [read_plugin(folder) for folder in sorted(folders)]


def check_folder(folder: Path) -> PluginManifest:
    """Read ``folder/plugin.toml`` and check it and its module (size, SHA-256)."""
    manifest_path = folder / MANIFEST
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise PluginDirError(f"{folder.name}: no {MANIFEST} (a plain file) in {folder}")
    raw = manifest_path.read_bytes()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PluginDirError(f"{folder.name}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES}")
    try:
        manifest = PluginManifest.model_validate(tomllib.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PluginDirError(f"{folder.name}: {MANIFEST} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise PluginDirError(f"{folder.name}: {MANIFEST}: {_problems(exc)}") from None
    names = [tool.name for tool in manifest.tools]
    if len(set(names)) != len(names):
        raise PluginDirError(f"{folder.name}: {MANIFEST}: two tools share a name")
    module = folder / manifest.module
    if module.is_symlink() or not module.is_file():
        raise PluginDirError(f"{folder.name}: its module {manifest.module} is not a file there")
    if module.stat().st_size > MAX_MODULE_BYTES:
        raise PluginDirError(f"{folder.name}: its module is larger than {MAX_MODULE_BYTES} bytes")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    if digest != manifest.sha256:
        raise PluginDirError(
            f"{folder.name}: the SHA-256 of {manifest.module} is {digest}, not the "
            f"{manifest.sha256} of its manifest (changed or damaged)"
        )
    return manifest


def install(
    source: Path,
    root: Path | None = None,
    *,
    replace: bool = False,
    accept: Callable[[PluginManifest], bool] | None = None,
) -> DirectoryPlugin:
    """Copy the plugin at ``source`` (a folder, ``.tar.gz``/``.tgz`` or ``.zip``) into
    ``root`` after checking it, and after ``accept(manifest)`` (the user, shown its
    permissions) said yes; its folder there is named after the manifest."""
    root = root or plugins_dir()
    with tempfile.TemporaryDirectory(prefix="openpista-plugin-") as scratch:
        folder = _unpacked(source, Path(scratch))
        manifest = check_folder(folder)
        target = root / manifest.name
        if target.exists() and not replace:
            raise PluginDirError(
                f"a plugin {manifest.name!r} is installed already (remove it first, or --replace)"
            )
        if accept is not None and not accept(manifest):
            raise PluginDirError("not installed")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = root / f".{manifest.name}.installing"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(folder, staged, symlinks=False)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return read_plugin(target)


def remove(name: str, root: Path | None = None) -> None:
    """Delete the installed plugin ``name``."""
    shutil.rmtree(_installed(name, root))


def set_enabled(name: str, enabled: bool, root: Path | None = None) -> None:
    """Enable or disable the installed plugin ``name`` (a disabled one offers no tools)."""
    marker = _installed(name, root) / DISABLED_MARKER
    if enabled:
        marker.unlink(missing_ok=True)
    else:
        marker.touch()


def _installed(name: str, root: Path | None) -> Path:
    folder = (root or plugins_dir()) / name
    if not re.match(_NAME, name) or not folder.is_dir():
        raise PluginDirError(f"no plugin {name!r} is installed (see `openpista plugins`)")
    return folder


def _unpacked(source: Path, scratch: Path) -> Path:
    """The plugin folder of ``source``: the folder itself, or an archive's single folder
    (or its top level), extracted without links, absolute paths or ``..``."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise PluginDirError(f"{source} is neither a plugin folder nor an archive")
    if source.stat().st_size > MAX_ARCHIVE_BYTES:
        raise PluginDirError(f"{source} is larger than {MAX_ARCHIVE_BYTES} bytes")
    target = scratch / "unpacked"
    target.mkdir()
    name = source.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(source) as archive:
                archive.extractall(target, filter="data")
        elif name.endswith(".zip"):
            _unzip(source, target)
        else:
            raise PluginDirError(f"{source}: install a folder, a .tar.gz or a .zip")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise PluginDirError(f"{source} cannot be unpacked safely: {exc}") from None
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def _unzip(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as archive:
        total = 0
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts or stat.S_ISLNK(info.external_attr >> 16):
                raise PluginDirError(f"{source}: the entry {info.filename!r} leaves the folder")
            total += info.file_size
            if total > MAX_ARCHIVE_BYTES:
                raise PluginDirError(f"{source} unpacks to more than {MAX_ARCHIVE_BYTES} bytes")
        archive.extractall(target)  # noqa: S202  every entry is checked above: no absolute path, '..' or link


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: {error['msg']}"
        for error in exc.errors()
    )
