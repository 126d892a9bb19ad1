"""JSON log lines and the redaction filter: a real gateway turn logs through the handler
``openpista start`` installs; every line must parse and no secret may leak."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

import openpista
from openpista.config import LoggingSettings, ProviderSettings
from openpista.models import Outbound
from openpista.observability.logs import (
    REDACTED,
    Redactor,
    configured_secrets,
    setup_logging,
)
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

KEY = "sk-live-0123456789abcdefXYZ"
BOT = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHANNEL_SECRET = "whsec-5d41402abc4b2a76"

log = logging.getLogger("openpista.tests.logs")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("headers={'Authorization': 'Bearer abc.def-123'}", "headers={'Authorization': '"),
        ("Authorization: Basic dXNlcjpwYXNz\r\nHost: x", "Host: x"),
        ("sent bearer eyJhbGciOi.J9.x to the server", "to the server"),
        ("url https://api.telegram.org/bot123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef/getMe", "/getMe"),
        ('{"access_token": "ya29.a0AfH6SM", "expires_in": 3599}', '"expires_in": 3599'),
        ("retry with api_key=abc123456&model=gpt", "&model=gpt"),
        ("client_secret: s3cr3t-value", "client_secret: "),
        ("key sk-ant-api03-AAAAAAAAAAAAAAAAAAAA was refused", "was refused"),
    ],
)
def test_the_redactor_blanks_what_looks_like_a_secret(text: str, kept: str) -> None:
    redacted = Redactor()(text)
    assert REDACTED in redacted
    assert kept in redacted
    for secret in ("abc.def-123", "dXNlcjpwYXNz", "ya29", "abc123456", "s3cr3t", "AAAAAAAA"):
        assert secret not in redacted


def test_plain_text_and_short_configured_values_are_left_alone() -> None:
    redact = Redactor(["abc", "a-long-configured-secret"])
    assert redact("the token_url is fine, abc too") == "the token_url is fine, abc too"
    assert redact("x a-long-configured-secret y") == f"x {REDACTED} y"


def test_configured_secrets_are_found_in_models_and_free_form_tables(tmp_path: Path) -> None:
    settings = emulator_settings(LlmEmulator(), tmp_path)
    settings.providers["openai"] = ProviderSettings(api_key=SecretStr(KEY))
    settings.channels["telegram"] = {"bot_token": BOT, "token_file": "/not/a/secret"}
    found = configured_secrets(settings)
    assert KEY in found
    assert BOT in found
    assert "/not/a/secret" not in found


async def test_json_lines_of_a_turn_carry_its_ids_and_no_secret(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    gateways: Gateways,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    settings = emulator_settings(llm_emulator, tmp_path)
    settings.providers["openai"].api_key = SecretStr(KEY)
    settings.channels["hooks"] = {"enabled": False, "signing_secret": CHANNEL_SECRET}
    settings.logging = LoggingSettings(format="json")
    setup_logging(settings, level=logging.INFO)

    @tool("leaky", "Log carelessly.")
    async def leaky() -> str:
        log.warning("calling out with key %s and %s", KEY, CHANNEL_SECRET)
        log.info("headers: {'Authorization': 'Bearer %s'}", BOT)
        return "ok"

    class Broken(LoopbackAdapter):
        async def send(self, message: Outbound) -> None:
            if message.kind == "answer":
                raise RuntimeError(f"send failed for {BOT} with {KEY}")
            await super().send(message)

    chat = Broken("t:")
    gateway = await gateways.start(settings, chat, approvals=False)
    gateway.runtime.toolbox.tools.register(leaky)
    llm_emulator.reply_tool_calls([("leaky", {})])
    llm_emulator.reply_text("done")
    await chat.say("1", "go", request_id="req-9")
    from openpista_testing.polling import eventually

    await eventually(lambda: llm_emulator.pending == 0 and not gateway.turns_in_flight, 30)
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "session", "channel", "request_id"} <= set(
            line
        )
    tool_line = next(line for line in lines if line["logger"] == "openpista.tests.logs")
    assert tool_line["level"] == "warning"
    assert tool_line["channel"] == "t:1"
    assert tool_line["request_id"] == "req-9"
    assert tool_line["session"]
    failed = next(line for line in lines if "failed to send" in line["message"])
    assert "RuntimeError: send failed for" in failed["exception"]
    for secret in (KEY, BOT, CHANNEL_SECRET, BOT.split(":")[1]):
        assert secret not in err


@pytest.fixture
def plugin_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A library's logger with the public filter a plugin adds, written to a text stream."""
    logger = logging.getLogger("openpista.tests.plugin_library")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    redact = openpista.redacting_filter(CHANNEL_SECRET, "", after=["proto.token."])
    logger.addFilter(redact)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.removeFilter(redact)
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_plugin_filter_keeps_its_secret_out_of_messages_args_and_tracebacks(
    plugin_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = plugin_log
    half = len(CHANNEL_SECRET) // 2
    logger.info("url /bot%s%s/getMe", CHANNEL_SECRET[:half], CHANNEL_SECRET[half:])
    logger.info("offered %s", "openpista.v1, proto.token.peer-sent-0123, x")
    try:
        raise ConnectionError(f"cannot post to /hook?s={CHANNEL_SECRET}")
    except ConnectionError:
        logger.exception("delivery failed")
    written = out.getvalue()
    assert written.count(REDACTED) == 3
    assert "ConnectionError: cannot post to /hook?s=" in written  # the traceback is kept
    assert "proto.token.[REDACTED], x" in written
    for secret in (CHANNEL_SECRET, "peer-sent-0123"):
        assert secret not in written


class Records(logging.Handler):
    """Keeps the records it is handed, as a later handler sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_plugin_filter_survives_bad_format_args_and_hands_no_raw_exception_on(
    plugin_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = plugin_log
    catcher = Records()
    seen = catcher.records
    logger.addHandler(catcher)
    try:
        logger.warning("two %s %s", CHANNEL_SECRET)  # one argument short: no exception
        try:
            raise ValueError(CHANNEL_SECRET)
        except ValueError:
            logger.error("boom", exc_info=True)
    finally:
        logger.removeHandler(catcher)
    assert "two %s %s" in out.getvalue()
    assert CHANNEL_SECRET not in out.getvalue()
    assert [record.exc_info for record in seen] == [None, None]  # only the redacted text
    assert seen[1].exc_text is not None
    assert "ValueError: [REDACTED]" in seen[1].exc_text
    assert CHANNEL_SECRET not in logging.Formatter().format(seen[1])


def test_a_filter_error_text_redaction_matches_its_log_lines() -> None:
    redact = openpista.redacting_filter(CHANNEL_SECRET).redact
    assert redact(f"refused: {CHANNEL_SECRET}!") == f"refused: {REDACTED}!"
    assert redact("nothing secret, token_url kept") == "nothing secret, token_url kept"
