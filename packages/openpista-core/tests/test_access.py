"""Remote-channel access: allowlists, one-time pairing codes, the open-to-all opt-in."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from openpista.access import CODE_LENGTH, AccessControl, PairingBook, normalize


@pytest.fixture
def book(tmp_path: Path) -> PairingBook:
    return PairingBook("telegram", tmp_path / "access" / "telegram.json")


def test_identities_compare_without_at_plus_or_case() -> None:
    assert normalize("@Ada ") == normalize("ada") == "ada"
    assert normalize("+4915112345678") == "4915112345678"
    assert normalize(42) == "42"


def test_allowlist_lets_in_any_matching_identity_and_refuses_the_rest() -> None:
    access = AccessControl("telegram", allowed=["@ada", 42])
    assert access.is_allowed(7, "Ada")
    assert access.is_allowed("42", None)
    assert not access.is_allowed(7, "mallory")
    assert not access.is_allowed()


def test_nobody_gets_in_by_default_and_everyone_with_open_to_all() -> None:
    assert not AccessControl("web").is_allowed("anyone")
    assert AccessControl("whatsapp", open_to_all=True).is_allowed("anyone")


def test_a_code_pairs_one_sender_once_and_survives_a_restart(book: PairingBook) -> None:
    code = book.new_code()
    assert len(code) == CODE_LENGTH
    access = AccessControl("telegram", pairing=book)
    assert not access.is_allowed(7)
    assert access.try_pair(7, f"/pair {code.lower()}") is True
    assert access.is_allowed(7)
    assert access.try_pair(8, f"/pair {code}") is False, "a code is valid once"
    reopened = AccessControl("telegram", pairing=PairingBook("telegram", book.path))
    assert reopened.is_allowed(7)
    assert not reopened.is_allowed(8)


def test_codes_are_stored_hashed_in_an_owner_only_file(book: PairingBook) -> None:
    code = book.new_code()
    assert code not in book.path.read_text()
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600


def test_expired_and_wrong_codes_are_refused(book: PairingBook) -> None:
    expired = book.new_code(ttl=-1)
    access = AccessControl("telegram", pairing=book)
    assert access.try_pair(7, f"/pair {expired}") is False
    assert access.try_pair(7, "/pair NOTACODE") is False
    assert not access.is_allowed(7)


def test_only_pairing_messages_are_pairing_attempts(book: PairingBook) -> None:
    access = AccessControl("telegram", pairing=book)
    assert access.try_pair(7, "hello there") is None
    assert access.try_pair(7, "/pair") is None
    code = book.new_code()
    assert access.try_pair(7, f"/start {code}") is True, "Telegram deep links say /start CODE"
    assert AccessControl("telegram").try_pair(7, f"/pair {code}") is None, "no pairing set up"


def test_unpair_forgets_a_sender(book: PairingBook) -> None:
    book.redeem(7, book.new_code())
    assert book.paired() == ["7"]
    assert book.unpair(7)
    assert not book.unpair(7)
    assert not book.is_paired(7)


def test_a_corrupt_pairing_file_is_a_clear_error(book: PairingBook) -> None:
    book.path.parent.mkdir(parents=True)
    book.path.write_text("{not json")
    with pytest.raises(OSError, match="cannot read the pairing file"):
        book.is_paired(7)
    assert not AccessControl("telegram", pairing=book).is_allowed(7), "refused, not crashed"


def test_pairing_commands_pair_list_and_unpair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pair / paired / unpair commands a channel gets from openpista.cli."""
    import click
    from click.testing import CliRunner

    from openpista.cli import pairing_commands

    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path))
    links: list[str] = []
    group = pairing_commands(
        click.Group("pigeon"),
        "pigeon",
        title="Pigeon",
        how_to_send="by carrier",
        after_code=lambda code: links.append(code),
    )
    runner = CliRunner()
    assert "one Pigeon user" in runner.invoke(group, ["pair", "--help"]).output
    made = runner.invoke(group, ["pair", "--ttl", "120"])
    assert made.exit_code == 0
    code = made.output.split("/pair ", 1)[1].split()[0]
    assert "valid 2 min, once" in made.output
    assert "Send it to the bot by carrier:" in made.output
    assert links == [code]
    assert "Nobody has paired yet" in runner.invoke(group, ["paired"]).output
    assert PairingBook("pigeon").redeem("4242", code)
    assert runner.invoke(group, ["paired"]).output.split() == ["4242"]
    assert runner.invoke(group, ["unpair", "4242"]).exit_code == 0
    again = runner.invoke(group, ["unpair", "4242"])
    assert again.exit_code == 1
    assert "4242 is not paired (see `openpista pigeon paired`)" in again.output
    for ttl in ("5", "9999999", "soon"):  # out of range or not a number: refused
        assert runner.invoke(group, ["pair", "--ttl", ttl]).exit_code == 2
