"""Settings, tokens, links, frame parsing and the resume backlog, without a server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from openpista.config import ConfigError
from openpista_web.auth import (
    offered_token,
    pairing_link,
    resolve_token,
    token_file,
    token_matches,
)
from openpista_web.hub import ClientHub
from openpista_web.protocol import (
    ApprovalFrame,
    FrameError,
    Limits,
    MessageFrame,
    PingFrame,
    parse_frame,
)
from openpista_web.settings import WebSettings

LIMITS = Limits(max_frame_bytes=10_000, max_image_bytes=1000, max_attachments=2)


def test_defaults_and_env_overrides() -> None:
    settings = WebSettings.from_table({}, environ={})
    assert (settings.host, settings.port, settings.token) == ("127.0.0.1", 8765, None)
    env = {"OPENPISTA_WEB_TOKEN": "from-env", "OPENPISTA_WEB_PORT": "9999"}
    settings = WebSettings.from_table({"token": "from-file", "port": 1}, environ=env)
    assert settings.port == 9999
    assert settings.token is not None
    assert settings.token.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"port": "http"}, "port"),
        ({"port": 70000}, "port"),
        ({"colour": "blue"}, "colour"),
        ({"tls_cert": "/c.pem"}, "together"),
        ({"token": "  "}, "empty"),
        ({"max_frame_bytes": 10}, "max_frame_bytes"),
    ],
)
def test_bad_settings_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        WebSettings.from_table({**table}, environ={})
    assert "[channels.web]" in str(error.value)


def test_bad_settings_never_show_the_token() -> None:
    with pytest.raises(ConfigError) as error:
        WebSettings.from_table({"token": ["s3cret-value"]}, environ={})
    assert "s3cret-value" not in str(error.value)


def test_generated_token_is_stored_privately(web_home: Path) -> None:
    settings = WebSettings.from_table({}, environ={})
    with pytest.raises(FileNotFoundError):
        resolve_token(settings, create=False)
    token, source = resolve_token(settings)
    assert len(token) >= 40
    assert source == str(token_file())
    assert token_file().parent == web_home / "web"
    assert token_file().stat().st_mode & 0o777 == 0o600
    assert resolve_token(settings) == (token, source)  # stable across restarts
    configured = WebSettings.from_table({"token": "mine"}, environ={})
    assert resolve_token(configured)[0] == "mine"


def test_token_presentation_and_comparison() -> None:
    assert offered_token(["openpista.v1", "openpista.token.abc"], "q") == "abc"
    assert offered_token(["openpista.v1"], "q") == "q"
    assert offered_token([], None) is None
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("", "abc")


def test_pairing_link_puts_the_token_in_the_fragment() -> None:
    plain = WebSettings.from_table({"host": "0.0.0.0", "port": 8000}, environ={})
    assert pairing_link(plain, "t/k+n") == "http://localhost:8000/#token=t%2Fk%2Bn"
    assert pairing_link(plain, "t", "phone.lan") == "http://phone.lan:8000/#token=t"
    tls = WebSettings.from_table(
        {"host": "::1", "tls_cert": "c.pem", "tls_key": "k.pem"}, environ={}
    )
    assert pairing_link(tls, "t") == "https://[::1]:8765/#token=t"


def test_frames_parse() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 20).decode()
    frame = parse_frame(
        '{"type":"message","text":" hi ","attachments":'
        f'[{{"name":"a b.png","mime_type":"image/png","data":"{png}"}}]}}',
        LIMITS,
    )
    assert isinstance(frame, MessageFrame)
    assert frame.text == "hi"
    assert frame.attachments[0].name == "a_b.png"
    assert frame.images[0] == base64.b64decode(png)
    approval = parse_frame('{"type":"approval","id":"r-1","approve":false}', LIMITS)
    assert isinstance(approval, ApprovalFrame)
    assert approval.as_text() == "/deny r-1"
    assert isinstance(parse_frame(b'{"type":"ping"}', LIMITS), PingFrame)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "malformed JSON"),
        ("null", "JSON object"),
        ('{"type": null}', "unknown frame type '?'"),
        ('{"type": "' + "x" * 100 + '"}', "unknown frame type '?'"),
        ('{"type":"message","text":"x","attachments":{}}', "must be a list"),
        ('{"type":"message","text":"x","attachments":[{},{},{}]}', "at most 2"),
        ('{"type":"message","text":"' + "y" * 10_001 + '"}', "frame too large"),
    ],
)
def test_bad_frames(raw: str | bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        parse_frame(raw, LIMITS)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send_text(self, data: str) -> None:
        self.frames.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_backlog_replays_what_was_missed_or_says_it_cannot() -> None:
    hub = ClientHub(backlog=3)
    tab = Recorder()
    client = hub.attach("client-1", tab)
    for n in range(2):
        await hub.publish("client-1", "notice", text=str(n))
    assert len(tab.frames) == 2
    assert hub.missed(client, hub.epoch, 2) == []
    assert hub.missed(client, hub.epoch, 1) == [tab.frames[1]]
    assert hub.missed(client, "other-run", 1) is None
    assert hub.missed(client, hub.epoch, 99) is None
    for n in range(2, 6):
        await hub.publish("client-1", "notice", text=str(n))
    assert hub.missed(client, hub.epoch, 1) is None  # pushed out of the backlog
    assert hub.missed(client, hub.epoch, 3) == tab.frames[3:]


async def test_frames_for_an_unknown_client_wait_for_it() -> None:
    hub = ClientHub()
    await hub.publish("late-client", "notice", text="early")
    client = hub.attach("late-client", Recorder())
    frames = hub.missed(client, hub.epoch, 0)
    assert frames is not None
    assert '"early"' in frames[0]
