"""The channel contract suite, run against the Discord adapter and its emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from openpista_discord.adapter import DiscordAdapter
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.contracts import ChannelContract

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter


class TestDiscordContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _emulator(self, discord_emulator: DiscordEmulator, alice: User) -> None:
        self.discord = discord_emulator
        self.alice = alice

    async def make_adapter(self) -> ChannelAdapter:
        table = {
            "token": self.discord.token,
            "api_base": self.discord.base_url,
            "allowed_users": [self.alice.id],
        }
        return DiscordAdapter(parse_settings(table))

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        self.discord.send_message(self.discord.dm_channel(self.alice), text, self.alice)

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        return self.discord.texts(self.discord.dm_channel(self.alice))
