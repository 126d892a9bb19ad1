"""Discord channel for openpista (discord.py 2: gateway WebSocket, slash commands)."""
