"""``~/.openpista/credentials.toml``: one entry per provider, mode 0600, written atomically.

The file looks like::

    [openai]
    kind = "oauth"
    access_token = "..."
    refresh_token = "..."
    expires_at = 1767225600.0

    [anthropic]
    kind = "api_key"
    api_key = "sk-ant-..."

A file that others can read (group or world permission bits) or that is not valid is refused
with an error naming the file and the fix; it is never silently rewritten.
"""

from __future__ import annotations

import os
import stat
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from openpista.config import ConfigError
from openpista.files import write_private
from openpista.home import in_home

CREDENTIALS_ENV = "OPENPISTA_CREDENTIALS"
CredentialKind = Literal["api_key", "oauth"]
_SECRET_FIELDS = ("api_key", "access_token", "refresh_token", "id_token")


class AuthError(ConfigError):
    """A credential cannot be stored, read, obtained or refreshed; the message names the fix."""


@dataclass(frozen=True, repr=False)
class Credential:
    """What is stored for one provider. ``expires_at`` is a Unix time in seconds."""

    kind: CredentialKind
    api_key: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None
    id_token: str | None = None
    account_id: str | None = None

    @property
    def secret(self) -> str | None:
        """The value sent to the provider: the API key, else the access token."""
        return self.api_key or self.access_token

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """True when the credential has an expiry less than ``seconds`` away (or past)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds

    def to_dict(self) -> dict[str, Any]:
        """The TOML table (``None`` values left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Credential:
        """Build from a TOML table; raises ``ValueError`` when it is not a valid entry."""
        if not isinstance(data, dict):
            raise ValueError("an entry is not a table")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if data.get("kind") not in ("api_key", "oauth"):
            raise ValueError("kind must be 'api_key' or 'oauth'")
        for key in (*_SECRET_FIELDS, "account_id"):
            if key in data and not isinstance(data[key], str):
                raise ValueError(f"{key} must be a string")
        expires = data.get("expires_at")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float)
        ):
            raise ValueError("expires_at must be a number")
        if data["kind"] == "api_key" and not data.get("api_key"):
            raise ValueError("an api_key entry has no api_key")
        if data["kind"] == "oauth" and not data.get("access_token"):
            raise ValueError("an oauth entry has no access_token")
        values = dict(data)
        if expires is not None:
            values["expires_at"] = float(expires)
        return cls(**values)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            shown.append(f"{f.name}='***'" if f.name in _SECRET_FIELDS else f"{f.name}={value!r}")
        return f"Credential({', '.join(shown)})"

    __str__ = __repr__


def default_credentials_path() -> Path:
    """``$OPENPISTA_CREDENTIALS`` if set, else ``credentials.toml`` in the state directory
    (``$OPENPISTA_HOME``, default ``~/.openpista``)."""
    return Path(os.environ.get(CREDENTIALS_ENV) or in_home("credentials.toml")).expanduser()


class CredentialStore:
    """The credentials file. Every call reads the file again (another process may write it)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_credentials_path()

    def __repr__(self) -> str:
        return f"CredentialStore({str(self.path)!r})"

    def load(self) -> dict[str, Credential]:
        """Every stored credential by provider; empty when the file does not exist."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AuthError(
                f"{self.path}: cannot read the credentials file: {exc.strerror}"
            ) from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthError(
                f"{self.path}: the credentials file is readable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):o}); refusing to use it. "
                f"Fix: chmod 600 {self.path} (and rotate the keys if others may have read it)"
            )
        try:
            with self.path.open("rb") as handle:
                data = tomllib.load(handle)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise AuthError(self._corrupt("not valid TOML")) from None
        except OSError as exc:
            raise AuthError(
                f"{self.path}: cannot read the credentials file: {exc.strerror}"
            ) from None
        found: dict[str, Credential] = {}
        for provider, entry in data.items():
            try:
                found[provider] = Credential.from_dict(entry)
            except ValueError as exc:
                raise AuthError(self._corrupt(f"[{provider}]: {exc}")) from None
        return found

    def get(self, provider: str) -> Credential | None:
        """The credential stored for ``provider``, if any."""
        return self.load().get(provider)

    def set(self, provider: str, credential: Credential) -> None:
        """Store ``credential`` for ``provider``, replacing what was there."""
        entries = self.load()
        entries[provider] = credential
        self._write(entries)

    def remove(self, provider: str | None = None) -> list[str]:
        """Remove ``provider`` (every provider when ``None``); returns the names removed."""
        entries = self.load()
        removed = list(entries) if provider is None else [p for p in entries if p == provider]
        if not removed:
            return []
        for name in removed:
            del entries[name]
        if entries:
            self._write(entries)
        else:
            self.path.unlink(missing_ok=True)
        return removed

    def _corrupt(self, reason: str) -> str:
        return (
            f"{self.path}: the credentials file is corrupt ({reason}). "
            f"Fix: delete it (rm {self.path}) and log in again with `openpista auth login`"
        )

    def _write(self, entries: dict[str, Credential]) -> None:
        import tomli_w

        text = tomli_w.dumps({name: cred.to_dict() for name, cred in sorted(entries.items())})
        write_private(self.path, text)
