"""The approval buttons' ids: made by button_id, read back by pressed, hostile ids refused."""

from __future__ import annotations

import pytest

from openpista.buttons import BUTTONS, button_id, pressed, verdict


def test_every_button_id_reads_back_as_its_verb_and_request() -> None:
    for verb, _label in BUTTONS:
        assert pressed(button_id(verb, "a1B2c3")) == (verb, "a1B2c3")
    assert [verb for verb, _ in BUTTONS] == ["approve", "deny"]


@pytest.mark.parametrize(
    "data",
    [
        "",
        "approve",
        "approve:",
        "maybe:abc",
        "APPROVE:abc",
        "approve:abc def",
        "approve:abc\n",
        "approve:ab-c",
        "approve:" + "a" * 33,
        "deny:abc:extra",
        " approve:abc",
        "approve:ａｂｃ",
    ],
)
def test_an_id_that_no_approval_button_has_is_none(data: str) -> None:
    assert pressed(data) is None


def test_the_verdict_names_who_decided() -> None:
    assert verdict("approve", "<@42>") == "✅ Approved by <@42>"
    assert verdict("deny", "<@42>") == "🚫 Denied by <@42>"
