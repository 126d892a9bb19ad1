"""Bounded JSON decoding of untrusted bodies."""

from __future__ import annotations

import logging

import pytest

from openpista import jsonsafe
from openpista.jsonsafe import JsonInputError


@pytest.mark.parametrize("levels", [65, 1_000, 100_000])
def test_deep_nesting_is_refused_without_recursion_error(levels: int) -> None:
    with pytest.raises(JsonInputError, match="nested too deeply"):
        jsonsafe.loads("[" * levels + "]" * levels)
    with pytest.raises(JsonInputError, match="nested too deeply"):
        jsonsafe.loads('{"a":' * levels + "1" + "}" * levels)


def test_nesting_at_the_limit_and_ordinary_bodies_decode() -> None:
    assert jsonsafe.loads("[" * 64 + "]" * 64) is not None
    assert jsonsafe.loads(b'{"text": "hi", "n": [1, {"x": null}]}') == {
        "text": "hi",
        "n": [1, {"x": None}],
    }


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", "not json", b'{"a": 1} trailing'])
def test_malformed_bodies_raise_one_error_type(body: bytes | str) -> None:
    with pytest.raises(JsonInputError, match="malformed JSON"):
        jsonsafe.loads(body)


def test_oversized_bodies_are_refused_before_decoding() -> None:
    with pytest.raises(JsonInputError, match="too large"):
        jsonsafe.loads(b"[" + b"1," * 1000 + b"1]", max_bytes=100)


def test_depth_counts_without_recursion() -> None:
    assert jsonsafe.depth(1) == 0
    assert jsonsafe.depth({"a": [1, [2]]}) == 3
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    assert jsonsafe.depth(deep, limit=64) == 65


def test_rejections_are_logged_once_a_minute_per_source(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.jsonsafe")
    with caplog.at_level(logging.WARNING, logger="test.jsonsafe"):
        for _ in range(5):
            jsonsafe.log_rejected(logger, "test-source-1", JsonInputError("bad"))
        jsonsafe.log_rejected(logger, "test-source-2", JsonInputError("bad"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["test-source-1: refused a body: bad", "test-source-2: refused a body: bad"]
