"""The HTTP side: the static client, compression, cache headers, CORS, the token check."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import httpx
import pytest

from openpista.config import ConfigError
from openpista_web.app import BUNDLED_STATIC

Serve = Callable[..., Awaitable[Any]]
TOKEN = "test-token-Zq8vN3kL0pXr"


async def get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=headers)


async def test_index_is_served_compressed_with_cache_headers(serve_web: Serve) -> None:
    served = await serve_web()
    raw = (BUNDLED_STATIC / "index.html").read_bytes()
    async with httpx.AsyncClient() as http:
        br = await http.get(served.http + "/", headers={"Accept-Encoding": "br"})
        gz = await http.get(served.http + "/", headers={"Accept-Encoding": "gzip"})
        plain = await http.get(served.http + "/", headers={"Accept-Encoding": "identity"})
        etag = plain.headers["etag"]
        again = await http.get(served.http + "/", headers={"If-None-Match": etag})
    assert br.headers["content-encoding"] == "br"
    assert gz.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert plain.content == raw  # httpx decodes gzip itself; the plain one is the file
    for response in (br, gz, plain):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert again.status_code == 304


async def test_compressed_bodies_decode_to_the_files(serve_web: Serve) -> None:
    served = await serve_web()
    raw = (BUNDLED_STATIC / "app.js").read_bytes()
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", served.http + "/app.js", headers={"Accept-Encoding": "br"}) as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.headers["content-type"].startswith("text/javascript")
    assert brotli.decompress(body) == raw
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "GET", served.http + "/style.css", headers={"Accept-Encoding": "gzip"}
        ) as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert gzip.decompress(body) == (BUNDLED_STATIC / "style.css").read_bytes()


async def test_pwa_files_have_their_types(serve_web: Serve) -> None:
    served = await serve_web()
    manifest = await get(served.http + "/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.json()["display"] == "standalone"
    for icon in manifest.json()["icons"]:
        response = await get(served.http + "/" + icon["src"])
        assert response.status_code == 200
        assert response.headers["content-type"] == icon["type"]
    worker = await get(served.http + "/sw.js")
    assert worker.headers["content-type"].startswith("text/javascript")
    assert (await get(served.http + "/nope.js")).status_code == 404


async def test_static_dir_overrides_the_bundled_client(serve_web: Serve, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>my own client</h1>")
    served = await serve_web(static_dir=str(site))
    assert "my own client" in (await get(served.http + "/")).text


async def test_static_dir_without_index_is_a_config_error(serve_web: Serve, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no index\.html"):
        await serve_web(static_dir=str(tmp_path))


async def test_cors_preflight(serve_web: Serve) -> None:
    served = await serve_web(cors_origins=["https://app.example"])
    preflight = {"Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient() as http:
        allowed = await http.options(
            served.http + "/api/auth", headers={"Origin": "https://app.example", **preflight}
        )
        refused = await http.options(
            served.http + "/api/auth", headers={"Origin": "https://evil.example", **preflight}
        )
        simple = await http.get(
            served.http + "/api/health", headers={"Origin": "https://app.example"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert simple.json() == {"ok": True, "ready": True}
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(f"Bearer {TOKEN}", 204), ("Bearer wrong", 401), ("", 401), (TOKEN, 401)],
)
async def test_token_check_endpoint(serve_web: Serve, authorization: str, status: int) -> None:
    served = await serve_web()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            served.http + "/api/auth", headers={"Authorization": authorization}
        )
    assert response.status_code == status
    assert TOKEN not in response.text
