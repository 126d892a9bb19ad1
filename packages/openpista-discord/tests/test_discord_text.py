"""Cutting answers into Discord's 2,000-character messages."""

from __future__ import annotations

import pytest

from openpista_discord.text import MESSAGE_LIMIT, split_message


def fences(part: str) -> int:
    return sum(1 for line in part.split("\n") if line.lstrip().startswith("```"))


def test_short_text_is_one_part() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("   ") == []


def test_cuts_on_paragraphs_first() -> None:
    text = ("a" * 1200 + "\n\n") * 3
    parts = split_message(text)
    assert [p.strip() for p in parts] == ["a" * 1200] * 3


def test_a_cut_inside_a_code_block_closes_and_reopens_the_fence() -> None:
    code = "\n".join(f"print({i})  # line {i}" for i in range(300))
    text = "Here is the script:\n\n```python\n" + code + "\n```\n\nThat is all."
    parts = split_message(text)
    assert len(parts) > 1
    for index, part in enumerate(parts):
        assert len(part) <= MESSAGE_LIMIT
        assert fences(part) % 2 == 0, f"part {index} leaves a fence open"
    assert all(p.startswith("```python\n") for p in parts[1:-1])
    joined = "\n".join(parts)
    for i in range(300):
        assert f"print({i})  # line {i}" in joined


@pytest.mark.parametrize(
    "text",
    [
        "x" * 10_000,  # no boundary at all
        "```" + "y" * 5000,  # a fence opened and never closed
        "```" + "z" * 3000 + "\n" + "w" * 3000,  # a huge language tag
        "word " * 3000,
        "\n" * 5000 + "tail",
    ],
)
def test_hostile_shapes_always_fit(text: str) -> None:
    parts = split_message(text)
    assert parts
    assert all(0 < len(p) <= MESSAGE_LIMIT for p in parts)
