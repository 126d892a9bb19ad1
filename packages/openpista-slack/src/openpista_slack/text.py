"""Model output (Markdown) as Slack ``mrkdwn``, cut at Slack's message size.

Slack's markup differs from Markdown: ``*bold*``, ``_italic_``, ``~strike~``,
``<url|label>`` links, no headings, and ``&``, ``<`` and ``>`` must be escaped (else
``<!channel>`` in a model's answer would ping a whole channel). Code spans and blocks are kept
verbatim apart from that escaping; a fence's language tag is dropped (Slack would show it).
"""

from __future__ import annotations

import re

from openpista import split_message

MESSAGE_LIMIT = 3900
"""Characters per message: Slack advises at most 4,000 (longer text is truncated at 40,000);
the margin leaves room for the escapes."""

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_HOLD = "\x00{}\x00"
_HELD = re.compile(r"\x00(\d+)\x00")


def escape(text: str) -> str:
    """Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """``markdown`` as Slack ``mrkdwn`` (see the module docstring)."""
    held: list[str] = []

    def hold(text: str) -> str:
        held.append(text)
        return _HOLD.format(len(held) - 1)

    text = markdown.replace("\x00", "")
    text = _FENCE.sub(lambda m: hold("```\n" + escape(m.group(1).rstrip("\n")) + "\n```"), text)
    text = _INLINE_CODE.sub(lambda m: hold(escape(m.group(0))), text)
    text = _LINK.sub(lambda m: hold(f"<{_url(m.group(2))}|{_label(m.group(1))}>"), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: hold("*" + m.group(1) + "*"), text)
    text = _BOLD.sub(lambda m: hold("*" + m.group(2) + "*"), text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _BULLET.sub(r"\1• ", text)
    while _HELD.search(text):
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text


def _url(url: str) -> str:
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _label(label: str) -> str:
    return escape(label).replace("|", "¦")


def mrkdwn_length(markdown: str) -> int:
    """How long ``markdown`` is as a Slack message (its ``mrkdwn``, escapes included)."""
    return len(to_mrkdwn(markdown))


def split(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` converted to mrkdwn and cut into messages of at most ``limit`` characters
    (code blocks closed and reopened); at least one, never empty."""
    return split_message(to_mrkdwn(text), limit) or [" "]
