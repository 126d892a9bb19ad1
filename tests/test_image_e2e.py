"""The official container image (the root Dockerfile), built against a private dockerd and
run: the daemon starts as its non-root user with /data as its volume, the web channel
answers, and the image's own healthcheck (``openpista status``) reports healthy.

Nothing can be pulled here, so the ``BASE`` image is made locally: the busybox rootfs with
the host's python3.11 (openpista_docker.testing) plus the shared libraries that Python's
extension modules and the installed wheels link to. The build context holds the openpista
wheels built from this checkout and the dependencies repacked from this environment
(scripts/wheelhouse): the same offline recipe the Dockerfile documents.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista_docker.testing import PrivateDockerd, busybox_rootfs
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BASE = "openpista-test-python-libs:latest"
TAG = "openpista-image-test:latest"
PACKAGES = ["packages/openpista-core", "packages/openpista-web", "."]
LIBRARY_SOURCES = [Path(sys.prefix) / "lib", Path("/usr/lib/python3.11/lib-dynload")]


def linked_libraries() -> set[str]:
    """The shared libraries that Python's extension modules and this venv's wheels need."""
    objects = [str(p) for root in LIBRARY_SOURCES for p in root.rglob("*.so*") if p.is_file()]
    found: set[str] = set()
    for start in range(0, len(objects), 200):
        listing = subprocess.run(
            ["ldd", *objects[start : start + 200]], capture_output=True, text=True, check=False
        ).stdout
        for line in listing.splitlines():
            path = line.split("=>")[-1].split("(")[0].strip()
            if "=>" in line and path.startswith(("/lib", "/usr/lib")):
                found.add(path)
    return found


def base_rootfs() -> bytes:
    """busybox + python3.11 + the libraries in :func:`linked_libraries`."""
    buffer = io.BytesIO(busybox_rootfs(with_python=True))
    with tarfile.open(fileobj=buffer, mode="a") as tar:
        present = set(tar.getnames())
        for library in sorted(linked_libraries()):
            name = library.lstrip("/")
            if name not in present:
                tar.add(os.path.realpath(library), name)
    return buffer.getvalue()


def build_context(target: Path) -> Path:
    """The Dockerfile, dist/ (openpista wheels of this checkout) and wheels/ (the rest)."""
    target.mkdir()
    shutil.copy(REPO / "Dockerfile", target / "Dockerfile")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(target / "dist"), *(str(REPO / p) for p in PACKAGES)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "wheelhouse"), str(target / "wheels"), "pip",
         "openpista[web]"],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateDockerd]:
    with PrivateDockerd.start() as started:
        yield started


@pytest.fixture(scope="module")
def image(engine: PrivateDockerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    client = engine.client()
    try:
        client.api.import_image_from_data(base_rootfs(), repository=BASE.split(":")[0])
        context = build_context(tmp_path_factory.mktemp("image") / "context")
        client.images.build(
            path=str(context), tag=TAG, buildargs={"BASE": BASE, "EXTRAS": "web"}, rm=True
        )
    finally:
        client.close()
    return TAG


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # loopback only
            result: dict[str, Any] = json.load(answer)
            return result
    except OSError:
        return None


def test_the_image_runs_the_daemon_as_its_user_and_the_web_channel_answers(
    engine: PrivateDockerd, image: str, llm_emulator: LlmEmulator
) -> None:
    client: Any = engine.client()
    config = client.api.inspect_image(image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/openpista/bin/openpista"]
    assert config["Cmd"] == ["start", "--no-terminal"]
    assert list(config["Volumes"]) == ["/data"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/openpista/bin/openpista", "status"]
    port = free_port()
    container: Any = client.containers.run(
        image,
        detach=True,
        network_mode="host",  # the engine has no bridge: the container shares loopback
        environment={
            "OPENPISTA_WEB_TOKEN": "image-test-token",
            "OPENPISTA_WEB_PORT": str(port),
            "OPENAI_API_KEY": "test-key",
            "OPENPISTA_PROVIDERS__OPENAI__BASE_URL": llm_emulator.openai_base_url,
        },
        volumes={"openpista-image-test": {"bind": "/data", "mode": "rw"}},
        # The image's own test, checked every second instead of every 30 s.
        healthcheck={"test": [], "interval": 1_000_000_000, "start_period": 1_000_000_000},
    )
    try:
        answer = wait_for(lambda: health(f"http://127.0.0.1:{port}/api/health"), 90, "web")
        assert answer == {"ok": True, "ready": True}  # 503 while warming up: not returned
        status = wait_for(
            lambda: (
                _health_status(client, container.id) in ("healthy", "unhealthy")
                and _health_status(client, container.id)
            ),
            90,
            "the healthcheck",
        )
        assert status == "healthy", container.logs().decode()[-2000:]
        daemon = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert "\nUid:\t10001\t" in daemon, daemon  # the daemon itself, not only exec
        for private in ("/data", "/data/.openpista"):
            listing = container.exec_run(["ls", "-ld", private]).output.decode()
            assert listing.startswith("drwx------"), listing
        assert container.exec_run(["ls", "/data/.openpista/memory.db"]).exit_code == 0
    finally:
        container.remove(force=True)
        client.volumes.get("openpista-image-test").remove(force=True)
        client.close()


def _health_status(client: Any, container_id: str) -> str:
    state = client.api.inspect_container(container_id)["State"]
    return str(state.get("Health", {}).get("Status", ""))
