"""The ``openpista doctor`` checks a channel plugin registers, for a test to run."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpista.doctor import DoctorCheck


def channel_checks(plugin: ModuleType, channel: str, table: dict[str, Any]) -> list[DoctorCheck]:
    """What the ``doctor_checks`` hook of ``plugin`` (its plugin module) registers for a
    configuration whose ``[channels.<channel>]`` is ``table``; run them with
    ``openpista.cli.doctor.run_online``."""
    from openpista.config import Settings

    found: list[DoctorCheck] = []
    plugin.doctor_checks(register=found.append, config=Settings(channels={channel: table}))
    return found
