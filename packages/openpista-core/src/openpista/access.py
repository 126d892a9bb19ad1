"""Who may talk to a remote channel: an allowlist, one-time pairing codes, or everyone.

The agent runs shell commands, so every remote channel (Telegram, WhatsApp, ...) serves only
senders it was told to trust. A channel builds one :class:`AccessControl` from its config::

    access = AccessControl("telegram", allowed=["@ada", 42], pairing=PairingBook("telegram"))
    if not access.is_allowed(user_id, username):
        if access.try_pair(user_id, text):   # "/pair CODE" with a code from `openpista ... pair`
            reply(PAIRED)
        else:
            reply(REFUSAL)                   # and nothing reaches the agent

Pairing codes are made by the owner on the command line (:meth:`PairingBook.new_code`), are
valid once and for ``ttl`` seconds, and are stored hashed; paired senders are remembered in
``<home>/access/<channel>.json`` (mode 0600) across restarts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from openpista.files import write_private

log = logging.getLogger(__name__)

REFUSAL = (
    "⛔ This is a private openpista agent. Ask its owner to add you, "
    "or to give you a pairing code and send: /pair CODE"
)
PAIRED = "✅ Paired: you can talk to this agent now."
PAIRING_FAILED = "⛔ That pairing code is wrong or has expired. Ask the owner for a new one."

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: easy to type from a screen
CODE_LENGTH = 8
PAIR_COMMANDS = ("/pair", "/start")  # Telegram deep links arrive as "/start CODE"


def normalize(identity: str | int) -> str:
    """How identities are compared: trimmed, without a leading ``@`` or ``+``, lower case."""
    return str(identity).strip().lstrip("@+").lower()


class PairingBook:
    """One channel's pairing codes and paired senders, kept in a JSON file.

    Safe to use from several processes at once (``openpista <channel> pair`` writes codes
    while the daemon redeems them): every change holds an exclusive lock on the file.
    """

    def __init__(self, channel: str, path: Path | None = None) -> None:
        from openpista.config import home_dir  # pydantic-settings: kept off `--help`'s path

        self.channel = channel
        self.path = path or home_dir() / "access" / f"{channel}.json"

    def new_code(self, ttl: float = 600.0) -> str:
        """A fresh one-time code, valid for ``ttl`` seconds."""
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        with self._edit() as state:
            now = time.time()
            state["codes"] = {h: t for h, t in state["codes"].items() if t > now}
            state["codes"][_digest(code)] = now + ttl
        return code

    def redeem(self, sender: str | int, code: str) -> bool:
        """Pair ``sender`` if ``code`` is valid; the code is used up either way it matched."""
        digest = _digest(code.strip().upper())
        with self._edit() as state:
            expires = state["codes"].pop(digest, None)
            if expires is None or expires < time.time():
                return False
            paired = set(state["paired"]) | {normalize(sender)}
            state["paired"] = sorted(paired)
            return True

    def is_paired(self, sender: str | int) -> bool:
        """Whether ``sender`` redeemed a code earlier."""
        return normalize(sender) in self._read()["paired"]

    def paired(self) -> list[str]:
        """Every paired sender."""
        return list(self._read()["paired"])

    def unpair(self, sender: str | int) -> bool:
        """Forget ``sender``; whether it was paired."""
        with self._edit() as state:
            before = len(state["paired"])
            state["paired"] = [s for s in state["paired"] if s != normalize(sender)]
            return len(state["paired"]) != before

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read the pairing file {self.path}: {exc}") from exc
        return {"codes": dict(data.get("codes", {})), "paired": list(data.get("paired", []))}

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            write_private(self.path, json.dumps(state, indent=1))


class AccessControl:
    """Decides whether a sender may reach the agent through one channel.

    A sender is let in when any of its identities (numeric id, username, phone number) is in
    ``allowed``, when it paired with a code, or when ``open_to_all`` is set (an explicit
    opt-in for public bots). With no allowlist and no pairing everyone is refused.
    """

    def __init__(
        self,
        channel: str,
        allowed: Iterable[str | int] = (),
        *,
        open_to_all: bool = False,
        pairing: PairingBook | None = None,
    ) -> None:
        self.channel = channel
        self.allowed = {normalize(a) for a in allowed if normalize(a)}
        self.open_to_all = open_to_all
        self.pairing = pairing

    def is_allowed(self, *identities: str | int | None) -> bool:
        """Whether the sender known by ``identities`` may talk to the agent."""
        if self.open_to_all:
            return True
        known = [normalize(i) for i in identities if i is not None and normalize(i)]
        if any(i in self.allowed for i in known):
            return True
        if self.pairing is None:
            return False
        try:
            return any(self.pairing.is_paired(i) for i in known)
        except OSError as exc:  # a damaged file refuses, it does not crash the channel
            log.error("%s: %s; paired senders are refused until it is fixed", self.channel, exc)
            return False

    def pairing_attempt(self, text: str) -> str | None:
        """The code in ``text`` when it is a pairing message (``/pair CODE``), else ``None``."""
        parts = text.strip().split()
        if self.pairing is None or len(parts) != 2 or parts[0].lower() not in PAIR_COMMANDS:
            return None
        return parts[1]

    def try_pair(self, sender: str | int, text: str) -> bool | None:
        """Redeem a pairing message: ``True`` paired, ``False`` bad code, ``None`` not one."""
        code = self.pairing_attempt(text)
        if code is None or self.pairing is None:
            return None
        return self.pairing.redeem(sender, code)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
