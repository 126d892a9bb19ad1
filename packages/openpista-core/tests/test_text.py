"""openpista.text.split_message: the cutting every channel shares."""

from __future__ import annotations

import random

import pytest

from openpista.text import FENCE, split_message


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_cuts_at_the_best_break_that_fits() -> None:
    assert split_message("short", 100) == ["short"]
    assert split_message("aaaa\n\nbbbb\ncccc", 12) == ["aaaa", "bbbb\ncccc"]
    assert split_message("aaaa bbbb\ncccc dddd", 12) == ["aaaa bbbb", "cccc dddd"]
    assert split_message("aaaa bbbb cccc", 10) == ["aaaa bbbb", "cccc"]
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_message("   \n\n  ", 100) == []


def test_counts_as_the_channel_counts() -> None:
    text = "😀" * 30  # two UTF-16 units each
    parts = split_message(text, 10, measure=utf16)
    assert parts == ["😀" * 5] * 6
    assert split_message(text, 40) == [text]  # 30 characters, though 60 UTF-16 units


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    line_{n} = {n}" for n in range(12))
    text = f"Here:\n\n```python\n{code}\n```\nDone."
    parts = split_message(text, 80)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 80
        fences = [line for line in part.split("\n") if line.strip().startswith(FENCE)]
        assert len(fences) % 2 == 0, part  # every part renders its code on its own
    assert parts[1].startswith("```python\n")
    assert all(p.startswith("```python\n") for p in parts[1:-1])
    body = [line for p in parts for line in p.split("\n") if "line_" in line]
    assert body == code.split("\n")  # indentation kept, nothing lost or doubled


def test_an_overlong_code_line_is_cut_mid_line_and_still_fenced() -> None:
    text = "```\n" + "y" * 100 + "\n```"
    parts = split_message(text, 30)
    assert all(len(p) <= 30 for p in parts)
    assert all(p.startswith("```\n") and p.endswith("\n```") for p in parts)
    assert "".join(p[4:-4] for p in parts) == "y" * 100


def test_hostile_text_never_loops_and_never_exceeds_the_limit() -> None:
    pieces = ["```", "```js", "\n", " ", "\n\n", "a", "😀", "word", "`"]
    rng = random.Random(7)
    for limit in (1, 2, 5, 9, 17, 64):
        for _ in range(150):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 120)))
            parts = split_message(text, limit, measure=utf16)
            assert all(utf16(p) <= max(limit, 2) for p in parts), (limit, text)
            assert all(p.strip() for p in parts)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        split_message("x", 0)


def test_no_part_ends_in_white_space() -> None:
    assert split_message("all of it\n\n", 100) == ["all of it"]
    assert split_message("aaaa bbbb\n\n", 6) == ["aaaa", "bbbb"]


def test_a_rendering_that_grows_as_parts_close_still_fits() -> None:
    # A channel drawing a 50-character frame around each complete code block: closing the
    # block a cut leaves open costs more than the closing fence itself.
    def framed(text: str) -> int:
        return len(text) + 50 * (text.count(FENCE) // 2)

    code = "\n".join(f"step_{n}()" for n in range(60))
    text = f"Run this:\n\n```python\n{code}\n```\nThen rest."
    parts = split_message(text, 200, measure=framed)
    assert len(parts) > 3
    assert all(framed(part) <= 200 for part in parts)
    shown = "\n".join(parts)
    assert all(f"step_{n}()" in shown for n in range(60))
