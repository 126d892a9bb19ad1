"""End to end: ``openpista auth`` (the installed command) with API keys and OAuth PKCE."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.oauth_emulator import OAuthEmulator

KEY = "sk-together-secret-4242"


@pytest.fixture
def oauth() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as emulator:
        yield emulator


@pytest.fixture
def auth_cli(make_cli: Callable[..., Cli], oauth: OAuthEmulator) -> Cli:
    cli = make_cli(None)
    cli.write_config(oauth.config("openai") + oauth.config("openrouter"))
    return cli


def _status(cli: Cli) -> dict[str, dict[str, Any]]:
    done = cli("auth", "status", "--json")
    assert done.returncode == 0, done.stderr
    return {row["provider"]: row for row in json.loads(done.stdout)}


def test_api_key_login_status_logout(auth_cli: Cli) -> None:
    cli = auth_cli
    assert _status(cli)["together"]["source"] == "none"
    done = cli("auth", "login", "together", "--api-key-stdin", stdin=f"{KEY}\n")
    assert done.returncode == 0, done.stderr
    assert "logged in to together" in done.stdout
    path = cli.home / ".openpista" / "credentials.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY in path.read_text()
    rows = _status(cli)
    assert rows["together"]["source"] == "stored"
    assert rows["together"]["kind"] == "api_key"
    assert rows["ollama"]["source"] == "none"
    assert not rows["ollama"]["needs_key"]
    cli.env["OPENAI_API_KEY"] = "sk-from-env"
    assert _status(cli)["openai"]["source"] == "env"
    text = cli("auth", "status")
    assert "together           stored api_key" in text.stdout
    assert "key from $OPENAI_API_KEY" in text.stdout
    listed = cli("model", "list", "--json")
    keys = {row["provider"]: row["key"] for row in json.loads(listed.stdout)}
    assert keys["together"] == "stored api_key", "model list sees the stored login"
    assert keys["openrouter"].startswith("no key: set $OPENROUTER_API_KEY or run `openpista auth")

    done = cli("auth", "logout", "together")
    assert done.returncode == 0
    assert "removed the stored credential of together" in done.stdout
    assert _status(cli)["together"]["source"] == "none"
    assert "nothing stored for together" in cli("auth", "logout", "together").stdout
    for output in (done.stdout, done.stderr, text.stdout, text.stderr):
        assert KEY not in output
        assert "sk-from-env" not in output


def test_the_picker_finds_providers_by_number_name_or_part_and_asks_the_method(
    auth_cli: Cli,
) -> None:
    # "open" matches openai and openrouter: asked again; "router" is one; 2 = an API key.
    done = auth_cli("auth", "login", stdin="open\nnothing-like-it\nrouter\n2\nor-key-1\n")
    assert done.returncode == 0, done.stderr
    assert "several match 'open': openai, openrouter" in done.stderr
    assert "no provider matches 'nothing-like-it'" in done.stderr
    assert "with 1) sign-in in the browser (OAuth) or 2) an API key" in done.stderr
    assert "logged in to openrouter (api key)" in done.stdout
    assert _status(auth_cli)["openrouter"]["kind"] == "api_key"
    by_number = auth_cli("auth", "login", stdin="1\n2\nsk-by-number\n")
    assert by_number.returncode == 0, by_number.stderr
    assert "logged in to openai" in by_number.stdout
    gave_up = auth_cli("auth", "login", stdin="qq\nqqq\nqqqq\n")
    assert gave_up.returncode == 1
    assert "no provider chosen" in gave_up.stderr


def test_anthropic_takes_an_api_key_only(auth_cli: Cli) -> None:
    refused = auth_cli("auth", "login", "claude", "--method", "oauth")
    assert refused.returncode == 1
    assert "anthropic has no OAuth sign-in" in refused.stderr
    done = auth_cli("auth", "login", "anthropic", stdin="sk-ant-hidden-1\n")  # hidden prompt
    assert done.returncode == 0, done.stderr
    assert "sk-ant-hidden-1" not in done.stdout + done.stderr
    assert _status(auth_cli)["anthropic"]["source"] == "stored"


def test_unsafe_or_corrupt_file_is_refused(auth_cli: Cli) -> None:
    assert auth_cli("auth", "login", "openai", "--api-key", KEY).returncode == 0
    path = auth_cli.home / ".openpista" / "credentials.toml"
    path.chmod(0o644)
    done = auth_cli("auth", "status")
    assert done.returncode == 2
    assert f"chmod 600 {path}" in done.stderr
    assert KEY not in done.stderr
    path.chmod(0o600)
    path.write_text("[openai\n")
    done = auth_cli("auth", "login", "together", "--api-key", KEY)
    assert done.returncode == 2
    assert "corrupt" in done.stderr
    assert f"rm {path}" in done.stderr
    assert path.read_text() == "[openai\n"


def test_stored_key_is_used_by_the_agent(make_cli: Callable[..., Cli], tmp_path: Any) -> None:
    with LlmEmulator(api_key="sk-stored-key") as llm:
        cli = make_cli(llm)
        cli.write_config(cli.config.read_text().replace('api_key = "test-key"\n', ""))
        missing = cli("run", "-e", "hi")
        assert missing.returncode != 0
        assert "openpista auth login openai" in missing.stderr
        login = cli("auth", "login", "openai", "--api-key-stdin", stdin="sk-stored-key\n")
        assert login.returncode == 0, login.stderr
        done = cli("run", "-e", "hi")
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stdout


def test_oauth_paste_login_through_the_command(auth_cli: Cli, oauth: OAuthEmulator) -> None:
    process = subprocess.Popen(
        [str(OPENPISTA), "auth", "login", "openai", "--no-browser"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=auth_cli.env,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        url = process.stdout.readline().strip()
        assert url.startswith(oauth.authorize_url), url
        redirected = httpx.get(url).headers["location"]  # the browser, not following
        out, err = process.communicate(f"{redirected}\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "logged in to openai (oauth, expires" in out
    assert oauth.calls["authorization_code"] == 1
    row = _status(auth_cli)["openai"]
    assert row["source"] == "stored"
    assert row["kind"] == "oauth"
    assert row["expires_at"]
    stored = (auth_cli.home / ".openpista" / "credentials.toml").read_text()
    token = next(line for line in stored.splitlines() if line.startswith("access_token"))
    secret = token.split('"')[1]
    assert oauth.token_valid(secret)
    assert secret not in out + err

    assert auth_cli("auth", "logout").returncode == 0
    assert _status(auth_cli)["openai"]["source"] == "none"


def test_copilot_device_login_through_the_command(
    make_cli: Callable[..., Cli], oauth: OAuthEmulator
) -> None:
    cli = make_cli(None)
    cli.write_config(oauth.config("github_copilot"))
    done = cli("auth", "login", "github_copilot")
    assert done.returncode == 0, done.stderr
    assert f"Open {oauth.base_url}/login/device and enter the code WDJB-MJHT" in done.stdout
    assert "logged in to github_copilot (oauth, expires" in done.stdout
    assert oauth.calls["copilot"] == 1
    stored = (cli.home / ".openpista" / "credentials.toml").read_text()
    assert 'refresh_token = "gho_' in stored
    assert "gho_" not in done.stdout + done.stderr


def test_status_columns_line_up_for_long_and_short_provider_names(make_cli: Any) -> None:
    cli = make_cli(None)
    cli.write_config("")
    cli.env["OPENAI_API_KEY"] = "sk-from-env"
    done = cli("auth", "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The longest built-in name is vercel_ai_gateway (17): every detail starts at column 19.
    assert "openai             key from $OPENAI_API_KEY" in lines
    assert "vercel_ai_gateway  not logged in" in lines
    assert "azure              not logged in" in lines
    assert "bedrock            no key needed" in lines
    assert {line.index(detail) for line, detail in zip(lines, _details(cli), strict=True)} == {19}


def _details(cli: Cli) -> list[str]:
    from openpista.auth.status import describe_key

    done = cli("auth", "status", "--json")
    return [describe_key(row) for row in json.loads(done.stdout)]
