"""The settings model of a plugin: one table of the configuration, validated one way.

A plugin declares its options as a :class:`PluginSettings` subclass in its ``settings.py``
(named ``<Name>Settings``), names its table in ``section`` and the environment variables
that override options in ``env``, and registers the model with the ``register_settings``
hook: core validates the table once per runtime (``openpista plugins`` lists its problems)::

    class PigeonSettings(PluginSettings):
        section: ClassVar[str] = "channels.pigeon"
        env: ClassVar[Mapping[str, str]] = {"PIGEON_TOKEN": "token"}

        enabled: bool = False
        token: SecretStr | None = None

    settings = context.settings(PigeonSettings)   # validated once; a channel factory is handed it

Every plugin's errors then read the same: ``[channels.pigeon] token: problem (from the
environment variable PIGEON_TOKEN)``, with several problems joined by ``; ``, and never a
value (an option may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr

from openpista.config import plugin_options

if TYPE_CHECKING:
    from openpista.config import Settings


class PluginSettings(BaseModel):
    """Base of a plugin's settings model; unknown options are errors."""

    model_config = ConfigDict(extra="forbid")

    section: ClassVar[str]
    """The table, ``"channels.<name>"``, ``"tools.<name>"`` or ``"skills.<mode>"``."""
    env: ClassVar[Mapping[str, str]] = {}
    """Environment variable -> option it overrides when set and not blank."""
    transport: ClassVar[Literal["tcp", "udp"]] = "tcp"
    """What the addresses of the ``host``/``port`` options (``webhook_*``, ``http_*``)
    listen on: ``"udp"`` for QUIC. ``openpista doctor`` checks that kind of port is free."""

    @classmethod
    def from_table(cls, table: object, environ: Mapping[str, str] | None = None) -> Self:
        """Validate ``table`` (``None``: the defaults) with :attr:`env` applied from
        ``environ`` (default ``os.environ``); raises :class:`~openpista.ConfigError`.
        Settings validated already (what core hands a channel factory) are returned as
        they are."""
        if isinstance(table, cls):
            return table
        return plugin_options(cls.section, table, cls, env=cls.env, environ=environ)

    @classmethod
    def from_config(cls, config: Settings, environ: Mapping[str, str] | None = None) -> Self:
        """Read and validate :attr:`section` of ``config`` (see :meth:`from_table`)."""
        return cls.from_table(table_of(config, cls.section), environ)

    def secret(self, option: str) -> str:
        """The value of the secret option ``option`` (a ``SecretStr | None`` field), ``""``
        when it is unset."""
        value: SecretStr | None = getattr(self, option)
        return value.get_secret_value() if value is not None else ""


def _http_root(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http(s) URL such as http://127.0.0.1:8080")
    return value.rstrip("/")


HttpRoot = Annotated[str, AfterValidator(_http_root)]
"""A settings field holding the root URL of an HTTP API (``http(s)://host...``, such as a
local server or an emulator standing in for the service), kept without a trailing ``/``."""


def table_of(config: Settings, section: str) -> object:
    """The raw table at ``section`` (``"tools.browser"``) of ``config``; ``None`` if absent."""
    kind, _, name = section.partition(".")
    if kind == "channels":
        return config.channels.get(name)
    if kind in ("tools", "skills"):
        return (getattr(config, kind).model_extra or {}).get(name)
    raise ValueError(f"a plugin table lives under channels, tools or skills, not {section!r}")
