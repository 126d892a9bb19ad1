"""A fake cluster leadership (``context.leadership``) that the test moves by hand."""

from __future__ import annotations

import asyncio

from openpista.plugin_context import Leadership


class Election:
    """One role shared by several replicas, held by at most one of them at a time:
    :meth:`replica` is one replica's ``context.leadership``, :meth:`elect` moves the role,
    :attr:`candidates` names the replicas that asked for it. Asking for another role fails
    the test (AssertionError)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.leader: str | None = None
        self.candidates: set[str] = set()
        self._change = asyncio.Event()

    def replica(self, name: str) -> Leadership:
        """The leadership of replica ``name``."""
        return _Seat(self, name)

    def elect(self, name: str | None) -> None:
        """Give the role to replica ``name`` (``None``: to nobody)."""
        self.leader = name
        change, self._change = self._change, asyncio.Event()
        change.set()


class _Seat:
    def __init__(self, election: Election, name: str) -> None:
        self.election, self.name = election, name

    def leading(self, role: str) -> bool:
        assert role == self.election.role, f"asked for role {role!r}"
        self.election.candidates.add(self.name)
        return self.election.leader == self.name

    async def changed(self, role: str) -> None:
        was = self.leading(role)
        while self.leading(role) == was:
            await self.election._change.wait()
