"""openpista.entry_points: the same entry points as importlib.metadata, read directly."""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pytest

from openpista.entry_points import EntryPoint, entry_points


def dist_info(site: Path, folder: str, entry_points_txt: str | bytes, version: str = "1.0") -> Path:
    metadata = site / folder
    metadata.mkdir(parents=True)
    name = folder.split("-", 1)[0]
    (metadata / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if isinstance(entry_points_txt, bytes):
        (metadata / "entry_points.txt").write_bytes(entry_points_txt)
    else:
        (metadata / "entry_points.txt").write_text(entry_points_txt)
    return metadata


def as_pairs(points: list[EntryPoint]) -> list[tuple[str, str]]:
    return sorted((p.name, p.value) for p in points)


def test_the_installed_plugins_are_those_importlib_metadata_finds() -> None:
    expected = sorted((p.name, p.value) for p in importlib.metadata.entry_points(group="openpista"))
    assert expected  # the workspace's plugins are installed
    assert as_pairs(entry_points("openpista")) == expected
    for point in entry_points("openpista"):
        name, version = point.distribution()
        assert name == importlib.metadata.distribution(name or "?").metadata["Name"]
        assert version == importlib.metadata.version(name or "?")


def test_sections_comments_extras_and_malformed_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info(
        tmp_path,
        "sample_plugin-2.0.dist-info",
        "# a comment\n[console_scripts]\nsample = sample.cli:main\n\n"
        "[openpista]\n; another comment\n  good = sample.plugin  \n"
        "extra = sample.other:hooks [speed]\nnot a pair\n= no_name\nempty =\n"
        "[openpista.other]\nelsewhere = sample.x\n",
        version="2.0",
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert as_pairs(entry_points("openpista")) == [
        ("extra", "sample.other:hooks"),
        ("good", "sample.plugin"),
    ]
    assert entry_points("openpista")[0].distribution() == ("sample_plugin", "2.0")
    assert as_pairs(entry_points("console_scripts")) == [("sample", "sample.cli:main")]


def test_the_first_distribution_of_a_name_wins_and_broken_ones_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(first, "Sample.Plugin-2.0.dist-info", "[openpista]\nnew = sample.new\n")
    dist_info(second, "sample_plugin-1.0.dist-info", "[openpista]\nold = sample.old\n")
    dist_info(second, "binary-1.0.dist-info", b"[openpista]\nbad = \xff\xfe\n")
    (second / "no_file-1.0.dist-info").mkdir()
    dist_info(second, "legacy.egg-info", "[openpista]\nlegacy = legacy.plugin\n")
    monkeypatch.setattr(
        sys, "path", [str(first), str(tmp_path / "missing"), str(second / "legacy.egg-info")]
    )
    assert as_pairs(entry_points("openpista")) == [("new", "sample.new")]
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    assert as_pairs(entry_points("openpista")) == [
        ("legacy", "legacy.plugin"),
        ("new", "sample.new"),
    ]


def test_a_zip_on_the_path_is_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zipped.writestr("zipped-1.0.dist-info/entry_points.txt", "[openpista]\nz = zipped.p\n")
    monkeypatch.setattr(sys, "path", [str(archive)])
    [point] = entry_points("openpista")
    assert (point.name, point.value, point.distribution()) == ("z", "zipped.p", ("zipped", "1.0"))


def test_load_imports_the_module_and_its_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ep_sample_mod.py").write_text("class Hooks:\n    class Inner:\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = EntryPoint("m", "ep_sample_mod", "openpista").load()
    inner = EntryPoint("i", "ep_sample_mod:Hooks.Inner", "openpista").load()
    assert module is sys.modules["ep_sample_mod"]
    assert inner is sys.modules["ep_sample_mod"].Hooks.Inner


def test_with_the_importlib_metadata_backport_installed_the_scan_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Libraries import the backport, which adds its own finder to sys.meta_path: it lists
    # the same sys.path distributions, so the direct scan goes on (and a damaged file is
    # skipped, not raised).
    importlib_metadata = pytest.importorskip("importlib_metadata")
    dist_info(tmp_path, "good-1.0.dist-info", "[openpista]\n; a comment\ngood = good.plugin\n")
    dist_info(tmp_path, "bad-1.0.dist-info", b"[openpista]\nbad = \xff\xfe\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, importlib_metadata.MetadataPathFinder])
    assert as_pairs(entry_points("openpista")) == [("good", "good.plugin")]


def test_another_import_hook_listing_distributions_is_asked_and_a_broken_one_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Hook:
        """An import hook with distributions of its own (as a zip importer would have)."""

        @staticmethod
        def find_spec(*_: object) -> None:
            return None

        @staticmethod
        def find_distributions(*_: object, **__: object) -> list[object]:
            return [importlib.metadata.PathDistribution(tmp_path / "hooked-1.0.dist-info")]

    dist_info(tmp_path, "hooked-1.0.dist-info", "[openpista]\nhooked = hooked.plugin\n")
    dist_info(tmp_path / "path", "bad-1.0.dist-info", b"[openpista]\nbad = \xff\xfe\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "path")])
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Hook])
    [point] = entry_points("openpista")
    assert (point.name, point.value) == ("hooked", "hooked.plugin")
