"""The slash commands (application commands) of the Discord channel.

``/ask PROMPT`` posts the question in the conversation and hands it to the agent (the
answer follows as a normal message); ``/model``, ``/session``, ``/clear`` and ``/help`` run
core's chat commands and answer ephemerally (only the user sees it); ``/pair CODE`` redeems
a pairing code. Strangers get the refusal, ephemerally, and nothing reaches the agent.
Imported only when the channel starts (it imports discord.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL

if TYPE_CHECKING:
    from openpista_discord.adapter import DiscordAdapter

ALREADY_IN = "✅ You can already talk to this agent."


def build_tree(client: discord.Client, adapter: DiscordAdapter) -> app_commands.CommandTree:
    """A command tree for ``client`` with the six commands, answered through ``adapter``."""
    tree = app_commands.CommandTree(client)

    async def refused(interaction: discord.Interaction) -> bool:
        if adapter.is_allowed(interaction.user):
            return False
        await interaction.response.send_message(REFUSAL, ephemeral=True)
        return True

    async def core(interaction: discord.Interaction, text: str) -> None:
        if await refused(interaction) or interaction.channel_id is None:
            return
        reply = await adapter.run_command(interaction.channel_id, text)
        await interaction.response.send_message(reply[:2000], ephemeral=True)

    @app_commands.describe(prompt="What to ask")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        if await refused(interaction) or interaction.channel_id is None:
            return
        await interaction.response.send_message(f"> {prompt}"[:2000])
        metadata = {"username": interaction.user.name, "slash": "ask"}
        await adapter.forward(
            interaction.channel_id, str(interaction.user.id), prompt, [], metadata
        )

    @app_commands.describe(name="The model to switch to (empty: show the current one)")
    async def model(interaction: discord.Interaction, name: str = "") -> None:
        await core(interaction, f"/model {name}".strip())

    @app_commands.describe(id="The session to switch to (empty: show the current one)")
    async def session(interaction: discord.Interaction, id: str = "") -> None:
        await core(interaction, f"/session {id}".strip())

    async def clear(interaction: discord.Interaction) -> None:
        await core(interaction, "/clear")

    async def help(interaction: discord.Interaction) -> None:
        await core(interaction, "/help")

    @app_commands.describe(code="The code `openpista discord pair` printed")
    async def pair(interaction: discord.Interaction, code: str) -> None:
        if adapter.is_allowed(interaction.user):
            await interaction.response.send_message(ALREADY_IN, ephemeral=True)
            return
        paired = adapter.access.try_pair(interaction.user.id, f"/pair {code}")
        await interaction.response.send_message(
            PAIRED if paired else PAIRING_FAILED, ephemeral=True
        )

    for callback, summary in (
        (ask, "Ask the agent (the answer is posted here)"),
        (model, "Show or switch this conversation's model"),
        (session, "Show this conversation's session, or switch to another"),
        (clear, "Start a fresh session in this conversation"),
        (help, "What openpista understands"),
        (pair, "Redeem a pairing code from `openpista discord pair`"),
    ):
        tree.add_command(
            app_commands.Command(name=callback.__name__, description=summary, callback=callback)
        )
    return tree
