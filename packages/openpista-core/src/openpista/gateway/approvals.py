"""Approvals: the ``ask`` side of the tool policy.

For every tool call of a turn, the guard built by :meth:`ApprovalBroker.guard` asks the
:class:`~openpista.policy.ToolPolicy`. ``allow`` runs the call, ``deny`` refuses it, and
``ask`` sends an :class:`~openpista.models.ApprovalRequest` to the chat the turn came from
and waits until the user answers ``/approve [ID]`` or ``/deny [ID]`` in *that* chat
(:meth:`ApprovalBroker.answer`), or the timeout expires (deny). Every decision, with who
made it, is stored in memory (:meth:`~openpista.memory.store.MemoryStore.list_decisions`)
before the call runs; when it cannot be stored, the call does not run.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from openpista.agent import ToolGuard, storable
from openpista.memory import DecisionAction, DecisionSource, MemoryStoreError
from openpista.memory.tables import TOOL_NAME_MAX_LENGTH
from openpista.models import ApprovalPrompt, ApprovalRequest, ToolCall
from openpista.policy import COMMAND_TOOL, ToolPolicy

if TYPE_CHECKING:
    from openpista.config import PolicySettings
    from openpista.memory import MemoryStore
    from openpista.runtime import Runtime

__all__ = ["ApprovalBroker", "Send", "Warnings"]

log = logging.getLogger(__name__)

Send = Callable[[ApprovalPrompt], Awaitable[None]]
"""Delivers a response (here: an approval request) to the chat it names."""
Warnings = Callable[[ToolCall], Awaitable[list[str]]]
"""What an approval request for a call must warn about
(:meth:`~openpista.tools.registry.ToolRegistry.approval_warnings`)."""

# "/approve" or "/deny", optionally with a Telegram-style "@botname" (groups add it).
_COMMAND = re.compile(r"/(approve|deny)(?:@\w+)?", re.IGNORECASE)
_ID_BYTES = 3  # 6 hex characters
# What a stored tool name may not contain; the LLM can send any name.
_CONTROL = re.compile("[\x00-\x1f\x7f]")

_Outcome = Literal["approve", "deny", "closed", "timeout"]
# How long close() waits for woken guards to store their decisions.
_CLOSE_GRACE = 5.0


@dataclass(eq=False)  # compared and hashed by identity
class _Pending:
    request: ApprovalRequest
    channel_id: str
    answer: asyncio.Future[_Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class ApprovalBroker:
    """Applies the tool policy to each call of a turn and collects the user's approvals.

    ``timeout`` is how many seconds a request waits for an answer before it counts as
    denied. One broker serves every session of the gateway.
    """

    def __init__(self, memory: MemoryStore, policy: ToolPolicy, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"approval timeout must be positive, not {timeout!r}")
        self.memory = memory
        self.policy = policy
        self.timeout = timeout
        self._pending: dict[str, _Pending] = {}  # request id -> request
        self._asking: set[_Pending] = set()  # guards between asking and recording
        self._closed = False

    @classmethod
    def from_settings(cls, memory: MemoryStore, settings: PolicySettings) -> ApprovalBroker:
        """The broker for ``[policy]``: its rules, defaults and approval timeout."""
        return cls(memory, ToolPolicy(settings), settings.approval_timeout)

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> ApprovalBroker:
        """The broker for ``runtime``: its memory and its policy as merged with the plugins'
        rules (not the bare ``[policy]`` of the config)."""
        return cls.from_settings(runtime.memory, runtime.settings.policy)

    def guard(
        self, session_id: str, channel_id: str, send: Send, warnings: Warnings | None = None
    ) -> ToolGuard:
        """The tool guard for one turn of ``session_id`` that came from ``channel_id``.

        Approval requests go out through ``send``, with what ``warnings`` says about the
        call; only answers from ``channel_id`` count.
        """

        async def check(call: ToolCall) -> str | None:
            return await self._check(session_id, channel_id, send, call, warnings)

        return check

    def pending(self, channel_id: str) -> list[ApprovalRequest]:
        """The requests waiting for an answer in ``channel_id``, oldest first."""
        return [p.request for p in self._pending.values() if p.channel_id == channel_id]

    @property
    def waiting(self) -> int:
        """How many requests wait for an answer, in every chat."""
        return len(self._pending)

    def is_pending(self, channel_id: str, request_id: str) -> bool:
        """Whether request ``request_id`` (any case) still waits for an answer in
        ``channel_id``: a button pressed for it now still counts."""
        waiting = self._pending.get(request_id.lower())
        return waiting is not None and waiting.channel_id == channel_id

    def answer(self, channel_id: str, text: str) -> str | None:
        """Resolve a request of ``channel_id`` if ``text`` is ``/approve [ID]`` or
        ``/deny [ID]``; returns the reply for the user, or ``None`` when ``text`` is not an
        approval command (then it is an ordinary message).
        """
        words = text.split(None, 2)
        match = _COMMAND.fullmatch(words[0]) if words else None
        if match is None:
            return None
        verb = match.group(1).lower()
        waiting = [p for p in self._pending.values() if p.channel_id == channel_id]
        if len(words) > 2:
            return f"❌ usage: /{verb} ID (one id, e.g. /{verb} {_example(waiting)})"
        argument = words[1] if len(words) == 2 else ""
        if argument:
            wanted = argument.lower()
            chosen = next((p for p in waiting if p.request.id == wanted), None)
            if chosen is None:
                shown = argument if len(argument) <= 32 else argument[:32] + "…"
                return f"❌ no approval request {shown!r} is waiting here. {_listing(waiting)}"
        elif not waiting:
            return "Nothing is waiting for your approval."
        elif len(waiting) > 1:
            return f"{len(waiting)} requests are waiting; say which one. {_listing(waiting)}"
        else:
            chosen = waiting[0]
        del self._pending[chosen.request.id]
        if not chosen.answer.done():
            chosen.answer.set_result("approve" if verb == "approve" else "deny")
        request = chosen.request
        if verb == "approve":
            return f"✅ approved {request.tool} ({request.id})"
        return f"🚫 denied {request.tool} ({request.id})"

    async def close(self) -> None:
        """Deny every waiting request (their guards return a denial) and refuse new ones.

        Idempotent.
        """
        self._closed = True
        self._pending = {}
        asking = list(self._asking)
        for waiting in asking:
            if not waiting.answer.done():
                waiting.answer.set_result("closed")
        # Let the woken guards record their decisions before the caller closes the memory
        # (bounded: a guard may still be stuck sending its request to a dead channel).
        if asking:
            waits = [asyncio.ensure_future(w.finished.wait()) for w in asking]
            _, late = await asyncio.wait(waits, timeout=_CLOSE_GRACE)
            for wait in late:
                wait.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- internals --------------------------------------------------------------------------

    async def _check(
        self,
        session_id: str,
        channel_id: str,
        send: Send,
        call: ToolCall,
        warnings: Warnings | None = None,
    ) -> str | None:
        decision = self.policy.decide(call.name, call.arguments, channel_id)
        what = _what(call)
        if decision.action == "allow":
            return await self._decide(
                session_id, channel_id, call, "allow", "policy", decision.reason
            )
        if decision.action == "deny":
            denial = f"the tool policy denies {what} ({decision.reason}); it did not run"
            return await self._decide(
                session_id, channel_id, call, "deny", "policy", decision.reason, denial
            )
        if self._closed:
            return await self._decide(
                session_id,
                channel_id,
                call,
                "deny",
                "timeout",
                "openpista is shutting down; nobody could approve",
                f"{what} needs the user's approval, but openpista is shutting down; it did not run",
            )
        notes = await warnings(call) if warnings is not None else []
        waiting = _Pending(self._request(call, decision.reason, notes), channel_id)
        self._pending[waiting.request.id] = waiting
        self._asking.add(waiting)
        try:
            outcome = await self._ask(waiting, session_id, send)
            verdict = self._verdict(waiting.request, what, outcome)
            return await self._decide(session_id, channel_id, call, *verdict)
        finally:
            self._pending.pop(waiting.request.id, None)
            self._asking.discard(waiting)
            waiting.finished.set()

    async def _ask(self, waiting: _Pending, session_id: str, send: Send) -> _Outcome | Exception:
        """Send the request and wait for its answer; the exception if sending failed."""
        request = waiting.request
        try:
            prompt = ApprovalPrompt(
                channel_id=waiting.channel_id, session_id=session_id, request=request
            )
            await send(prompt)
        except Exception as exc:
            log.exception(
                "approval request %s could not be sent to %s", request.id, waiting.channel_id
            )
            return exc
        try:
            async with asyncio.timeout(self.timeout):
                return await waiting.answer
        except TimeoutError:
            # An answer that arrived together with the deadline still counts.
            if waiting.answer.done() and not waiting.answer.cancelled():
                return waiting.answer.result()
            return "timeout"

    def _verdict(
        self, request: ApprovalRequest, what: str, outcome: _Outcome | Exception
    ) -> tuple[DecisionAction, DecisionSource, str, str | None]:
        """(action, decided_by, detail, denial text) for the outcome of an approval request."""
        rid = request.id
        if outcome == "approve":
            return "allow", "user", f"approved ({rid})", None
        if outcome == "deny":
            denial = f"the user denied {what} (approval {rid}); it did not run"
            return "deny", "user", f"denied ({rid})", denial
        if outcome == "closed":
            denial = f"openpista is shutting down; {what} was not approved and did not run"
            return "deny", "timeout", f"openpista shut down before an answer ({rid})", denial
        if isinstance(outcome, Exception):
            detail = (
                f"approval request {rid} could not be delivered: "
                f"{type(outcome).__name__}: {outcome}"
            )
            denial = (
                f"{what} needs the user's approval, but the request could not be delivered; "
                "it did not run"
            )
            return "deny", "timeout", detail, denial
        denial = (
            f"nobody approved {what} within {self.timeout:g} s (approval {rid}); it did not run"
        )
        return "deny", "timeout", f"no answer within {self.timeout:g} s ({rid})", denial

    def _request(self, call: ToolCall, reason: str, warnings: list[str]) -> ApprovalRequest:
        request_id = secrets.token_hex(_ID_BYTES)
        while request_id in self._pending:
            request_id = secrets.token_hex(_ID_BYTES)
        return ApprovalRequest(
            id=request_id,
            tool=call.name,
            arguments=call.arguments,
            reason=reason,
            timeout=self.timeout,
            warnings=warnings,
        )

    async def _decide(
        self,
        session_id: str,
        channel_id: str,
        call: ToolCall,
        action: DecisionAction,
        decided_by: DecisionSource,
        detail: str,
        denial: str | None = None,
    ) -> str | None:
        """Store the decision; ``denial`` (``None``: allowed) unless storing fails."""
        tool = _CONTROL.sub("\ufffd", storable(call.name))[:TOOL_NAME_MAX_LENGTH].strip() or "?"
        arguments: dict[str, Any] = dict(call.arguments)
        if not arguments and call.raw_arguments:
            arguments = {"raw_arguments": call.raw_arguments}
        try:
            await self.memory.record_decision(
                session_id, channel_id, tool, arguments, action, decided_by, storable(detail)
            )
        except MemoryStoreError as exc:
            log.error("cannot record the tool decision for %s: %s", channel_id, exc)
            if denial is not None:
                return denial
            return f"{_what(call)} did not run: its approval could not be recorded ({exc})"
        return denial


def _what(call: ToolCall) -> str:
    return f"{call.name} with this command" if call.name == COMMAND_TOOL else call.name


def _listing(waiting: list[_Pending]) -> str:
    if not waiting:
        return "Nothing is waiting for your approval."
    ids = ", ".join(f"{p.request.id} ({p.request.tool})" for p in waiting)
    return f"Waiting: {ids}. Answer /approve ID or /deny ID."


def _example(waiting: list[_Pending]) -> str:
    return waiting[0].request.id if waiting else "a1b2c3"
