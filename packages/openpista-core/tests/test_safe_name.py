"""safe_name: a file name a peer sent, kept inside its folder whatever it holds."""

from __future__ import annotations

import pytest

from openpista.files import safe_name


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path/x.png", "x.png"),
        ("my report (1).pdf", "my_report_1_.pdf"),
        (".bashrc", "bashrc"),
        ("...", "file"),
        ("", "file"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ("café.jpg", "café.jpg"),
    ],
)
def test_received_file_names_stay_in_their_folder(sent: str, kept: str) -> None:
    assert safe_name(sent) == kept


def test_a_long_name_keeps_its_last_characters_and_extension() -> None:
    assert safe_name("a" * 500 + ".txt") == "a" * 96 + ".txt"
    assert safe_name("b" * 500 + ".pdf", 120) == "b" * 116 + ".pdf"
