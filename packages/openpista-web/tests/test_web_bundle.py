"""The browser client's budget and packaging: the "build/size check" of the test command."""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from pathlib import Path

from openpista_web.app import BUNDLED_STATIC

BUDGET = 50 * 1024  # bytes, gzipped, the whole client
PACKAGE = Path(__file__).parents[1]


def shipped() -> list[Path]:
    return sorted(p for p in BUNDLED_STATIC.rglob("*") if p.is_file())


def test_whole_client_is_under_50_kb_gzipped() -> None:
    sizes = {p.name: len(gzip.compress(p.read_bytes(), 9)) for p in shipped()}
    total = sum(sizes.values())
    print(f"web client: {total} bytes gzipped ({sizes})")
    assert total < BUDGET, f"the client is {total} bytes gzipped, over the {BUDGET} budget"


def test_every_file_the_shell_names_is_shipped() -> None:
    names = {p.name for p in shipped()}
    worker = (BUNDLED_STATIC / "sw.js").read_text()
    cached = json.loads(re.search(r"const SHELL = (\[.*?\]);", worker, re.S).group(1))  # type: ignore[union-attr]
    assert {c for c in cached if c != "./"} <= names
    html = (BUNDLED_STATIC / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"#:]+)"', html))
    assert referenced <= names
    for module in ("app.js", "conn.js", "ui.js"):
        imports = re.findall(r'from "\./([^"]+)"', (BUNDLED_STATIC / module).read_text())
        assert set(imports) <= names
    # Every module and asset the client loads is cached for the offline start.
    assert {"app.js", "conn.js", "ui.js", "style.css", "index.html"} <= set(cached)


def test_manifest_makes_it_installable() -> None:
    manifest = json.loads((BUNDLED_STATIC / "manifest.webmanifest").read_text())
    assert manifest["display"] == "standalone"
    assert manifest["start_url"]
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        assert (BUNDLED_STATIC / icon["src"]).is_file()
    png = (BUNDLED_STATIC / "icon-512.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 512  # IHDR width


def test_wheel_ships_the_client(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    wheel = Path(next(iter(WheelBuilder(str(PACKAGE)).build(directory=str(tmp_path)))))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for path in shipped():
        assert f"openpista_web/static/{path.name}" in names
    assert "openpista_web/py.typed" in names
