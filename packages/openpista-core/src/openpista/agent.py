"""The agent: a ReAct loop of LLM requests and tool rounds over one stored session.

One turn: the user's text is stored, the LLM is asked with the session's history and the
tools, the tool calls it makes run (concurrently within a round) and their results are
stored and sent back, until the LLM answers with text or ``max_tool_rounds`` is reached.
Every message is persisted as it comes: an assistant message's tool calls before they run,
each tool result once it is there. So a turn cut short (its replica died) is continued
where it stopped (``run_turn(..., resume=True)``): a finished tool call is never run again,
and one that was running is shown to the LLM as interrupted
(:func:`openpista.memory.store.well_formed`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openpista.compaction import (
    NOTICE,
    model_context_window,
    needs_compaction,
    split_point,
    summary_request,
)
from openpista.models import Answer, Attachment, Message, ToolCall, ToolResult, Usage
from openpista.observability.tracing import NO_TRACING, Tracing
from openpista.outbox import carried_over, noted
from openpista.providers.base import ChatResult, ProviderError, TextDelta, ToolSpec
from openpista.tools.context import TurnContext, current_turn, reset_turn, set_turn

if TYPE_CHECKING:
    from openpista.memory import MemoryStore, Speaker
    from openpista.observability.usage import UsageMeter
    from openpista.providers.base import LlmProvider
    from openpista.tools.registry import ToolRegistry

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with what no database stores (NUL, lone surrogates) replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


@dataclass(frozen=True)
class ToolStarted:
    """A tool call is about to run."""

    call: ToolCall


@dataclass(frozen=True)
class ToolFinished:
    """A tool call has finished (``result.is_error`` tells how)."""

    call: ToolCall
    result: ToolResult


AgentEvent = TextDelta | ToolStarted | ToolFinished
EventSink = Callable[[AgentEvent], Awaitable[None] | None]
ToolGuard = Callable[[ToolCall], Awaitable[str | None]]
"""Decides whether a tool call may run: ``None`` allows it, a text denies it (and says why).

The gateway builds one per turn from the tool policy and the channel (asking the user when
the policy says ``ask``)."""


def round_limit_message(rounds: int) -> str:
    """What the user reads when the loop stops at ``max_tool_rounds``."""
    return (
        f"⚠️ I stopped after {rounds} tool rounds without reaching a final answer "
        f"(limit: agent.max_tool_rounds = {rounds}). Ask me to continue, or raise the limit."
    )


class Agent:
    """Runs turns for sessions stored in ``memory``, answering with ``provider``.

    ``context`` returns extra system-prompt text (the skills' context); it is called on
    every request so that the LLM always sees it. ``history_window`` caps how many stored
    messages a turn reads and sends (``None``: all of them). ``meter`` stores and measures
    each request's usage and refuses requests over ``[budget]``. Before each request the
    history is compacted when it would not fit ``context_window`` tokens (default: the
    model's, from litellm's model map) (:mod:`openpista.compaction`).
    """

    def __init__(
        self,
        provider: LlmProvider,
        tools: ToolRegistry,
        memory: MemoryStore,
        *,
        system_prompt: str = "",
        max_tool_rounds: int = 10,
        context: Callable[[], str] | None = None,
        history_window: int | None = None,
        meter: UsageMeter | None = None,
        context_window: int | None = None,
    ) -> None:
        self.provider = provider
        self.tools = tools
        self.memory = memory
        self.system_prompt = system_prompt
        self.max_tool_rounds = max_tool_rounds
        self.context = context
        self.history_window = history_window
        self.meter = meter
        self.context_window = context_window
        self._compacted: set[str] = set()  # sessions whose turn compacted for the first time

    def _system_message(self) -> Message:
        turn = current_turn()
        parts = [
            self.system_prompt,
            self.context() if self.context else "",
            turn.notes if turn is not None else "",
        ]
        return Message(role="system", content="\n\n".join(p for p in parts if p))

    async def run_turn(
        self,
        session_id: str,
        text: str,
        on_event: EventSink | None = None,
        guard: ToolGuard | None = None,
        *,
        attachments: Sequence[Attachment] = (),
        channel_id: str = "",
        sender: str = "",
        resume: bool = False,
    ) -> Answer:
        """Answer ``text`` in session ``session_id`` (created when missing).

        ``attachments`` are the files the user sent (their pictures are shown to the LLM,
        every file is named with its path); files that tools produce come back in the
        response's ``attachments``. ``guard`` is asked before each tool call runs; a denied
        call gives the LLM an error result saying why. Tools can learn the session and
        ``channel_id`` from :func:`openpista.tools.context.current_turn`. With ``channel_id``
        and ``sender``, the person who wrote ``text`` is recorded in the session, and their
        notes are shown in the system prompt (:mod:`openpista.memory.notes`).

        Provider failures come back as a response with ``is_error`` set and a message that
        starts with ❌; the history stays as stored so far. Over ``[budget]``, nothing is
        stored and the LLM is not asked: the response says why.

        With ``resume``, the turn of ``text`` was begun before and cut short (its user
        message is stored, ``text`` and ``attachments`` are not stored again): it continues
        from what it stored, its tool rounds counted, and one already answered returns its
        stored answer without asking the LLM. The LLM sees the turn's user message as the
        first attempt did, with ``attachments`` (the files as written here: their paths, their
        pictures); the files its earlier rounds' tools produced go with the answer when they
        are here (:func:`openpista.outbox.carried_over`), the others are named in it.
        """
        refusal = await self.meter.refusal(session_id) if self.meter else None
        if refusal is not None:
            return Answer.error(refusal, session_id=session_id)
        speaker = _speaker(channel_id, sender)
        rounds = 0
        produced: list[Attachment] = []
        notes: list[str] = []
        if resume:
            history = await self.memory.resume_turn(session_id, self.history_window)
            produced, notes = _carried_over(history, session_id)
            last = history[-1] if history else None
            if last is not None and last.role == "assistant" and not last.tool_calls:
                answered = Answer(session_id=session_id, text=last.content, attachments=produced)
                return noted(answered, notes)  # answered already
            _show_files(history, _user_message(text, attachments))
            rounds = _rounds_begun(history)
        else:
            user = _user_message(text, attachments)
            history = await self.memory.start_turn(
                session_id, user, self.history_window, speaker=speaker
            )
            history.append(user)
        turn = TurnContext(session_id, channel_id)
        if speaker is not None:
            turn = await self._with_notes(turn, speaker.person)
        token = set_turn(turn)
        try:
            answer = await self._loop(
                session_id, channel_id, history, on_event, guard, rounds, produced
            )
        finally:
            reset_turn(token)
        answer = noted(answer, notes)
        if session_id in self._compacted:  # the user is told once, with this answer
            self._compacted.discard(session_id)
            answer = answer.model_copy(update={"text": f"{NOTICE}\n\n{answer.text}"})
        return answer

    async def _with_notes(self, turn: TurnContext, person: str) -> TurnContext:
        from openpista.memory.notes import notes_prompt

        notes = notes_prompt(await self.memory.notes_of(person))
        return TurnContext(turn.session_id, turn.channel_id, person, notes)

    async def _loop(
        self,
        session_id: str,
        channel_id: str,
        history: list[Message],
        on_event: EventSink | None,
        guard: ToolGuard | None,
        rounds: int,
        produced: list[Attachment],
    ) -> Answer:
        """Ask and run tool rounds until an answer; ``produced``: the files of the rounds
        before (a continued turn's), which the answer carries with those of its own rounds."""
        usage = Usage()
        produced = list(produced)
        specs = self.tools.specs()
        try:
            while True:
                refusal = await self.meter.refusal(session_id) if self.meter and rounds else None
                if refusal is not None:  # spent during this turn: stop before the next request
                    notice = Message(role="assistant", content=refusal)
                    await self.memory.append_message(session_id, notice)
                    return Answer.error(refusal, session_id=session_id, usage=usage)
                result = await self._ask(history, specs, on_event)
                usage = usage + result.usage
                if self.meter is not None:
                    provider = self.provider
                    await self.meter.llm_done(
                        session_id, channel_id, provider.name, provider.model, result.usage
                    )
                reply = Message(
                    role="assistant", content=storable(result.text), tool_calls=result.tool_calls
                )
                if not result.tool_calls:
                    await self.memory.append_message(session_id, reply)
                    return Answer(
                        session_id=session_id,
                        text=result.text,
                        usage=usage,
                        attachments=produced,
                    )
                if rounds >= self.max_tool_rounds:
                    break  # the unanswered calls are not stored: history stays well-formed
                rounds += 1
                # Stored before its calls run, each result as it comes: a turn cut short
                # continues from there, and never runs a finished call again.
                await self.memory.append_message(session_id, reply)
                results = await self._run_tools(session_id, result.tool_calls, on_event, guard)
                produced += [a for r in results for a in r.attachments]
                history.extend([reply, *(Message(role="tool", tool_result=r) for r in results)])
        except ProviderError as exc:
            return Answer.error(str(exc), session_id=session_id, usage=usage, attachments=produced)
        notice = Message(role="assistant", content=round_limit_message(self.max_tool_rounds))
        await self.memory.append_message(session_id, notice)
        return Answer(session_id=session_id, text=notice.content, usage=usage, attachments=produced)

    async def _ask(
        self, history: list[Message], specs: list[ToolSpec], on_event: EventSink | None
    ) -> ChatResult:
        window = self.context_window or await model_context_window(self.provider.model, history)
        if window is not None:
            await self._fit(history, window)
        system = self._system_message()
        if history and history[0].role == "system":  # a summary of the older messages
            system = Message(role="system", content=f"{system.content}\n\n{history[0].content}")
            history = history[1:]
        messages = [system, *history]
        final: ChatResult | None = None
        began, first = time.monotonic(), None
        provider = self.provider
        described = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider.name,
            "gen_ai.request.model": provider.model,
        }
        with self._tracing.span(f"chat {provider.model}", described) as span:
            try:
                async for event in provider.stream(messages, specs):
                    if isinstance(event, ChatResult):
                        final = event
                    elif isinstance(event, TextDelta):
                        first = first or time.monotonic() - began
                        if on_event is not None:
                            await _emit(on_event, event)
                if final is None:
                    raise ProviderError("other", "the provider ended its answer without a result")
            except ProviderError as exc:
                span.set({"error.type": exc.kind})
                self._measure_llm(time.monotonic() - began, first, exc.kind)
                raise
            span.set(
                {
                    "gen_ai.usage.input_tokens": final.usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": final.usage.completion_tokens,
                }
            )
        self._measure_llm(time.monotonic() - began, first, "ok")
        return final

    @property
    def _tracing(self) -> Tracing:
        return self.meter.recorder.tracing if self.meter is not None else NO_TRACING

    async def _fit(self, history: list[Message], window: int) -> None:
        """Compact ``history`` (in place, and in the store) when the next request would not
        fit ``window``: its older part becomes a summary written by the LLM."""
        from openpista.memory.summaries import SUMMARY_HEADING

        turn = current_turn()
        if turn is None or not needs_compaction(self._system_message(), history, window):
            return
        split = split_point(history, window)
        if split is None:
            return  # one huge turn: nothing older to summarise, the provider will say
        older, kept = history[:split], history[split:]
        summary = ""
        async for event in self.provider.stream(summary_request(older, window), []):
            if isinstance(event, ChatResult):
                summary = storable(event.text.strip())
        if not summary or not await self.memory.summarize(turn.session_id, len(kept), summary):
            return
        if older[0].role != "system":  # the first compaction of this session
            self._compacted.add(turn.session_id)
        history[:] = [Message(role="system", content=f"{SUMMARY_HEADING}\n{summary}"), *kept]

    def _measure_llm(self, seconds: float, first_token: float | None, outcome: str) -> None:
        if self.meter is None or not self.meter.recorder.enabled:
            return
        recorder, provider = self.meter.recorder, self.provider
        recorder.llm_call(provider.name, provider.model, seconds, first_token, outcome)
        if outcome != "ok":
            recorder.error(outcome)

    async def _run_tools(
        self,
        session_id: str,
        calls: list[ToolCall],
        on_event: EventSink | None,
        guard: ToolGuard | None,
    ) -> list[ToolResult]:
        """Run ``calls`` concurrently, storing each result as soon as it is there."""

        async def run(call: ToolCall) -> ToolResult:
            result = await self._run_tool(call, guard)
            await self.memory.append_message(session_id, Message(role="tool", tool_result=result))
            return result

        if on_event is not None:
            for call in calls:
                await _emit(on_event, ToolStarted(call))
        results = await asyncio.gather(*(run(call) for call in calls))
        if on_event is not None:
            for call, result in zip(calls, results, strict=True):
                await _emit(on_event, ToolFinished(call, result))
        return results

    async def _run_tool(self, call: ToolCall, guard: ToolGuard | None) -> ToolResult:
        denial = await guard(call) if guard is not None else None
        if denial is not None:
            self._measure_tool(call.name, "denied", 0.0)
            return ToolResult(call_id=call.id, name=call.name, output=denial, is_error=True)
        began = time.monotonic()
        described = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
        }
        with self._tracing.span(f"execute_tool {call.name}", described) as span:
            result = await self.tools.dispatch(call)
            if result.is_error:
                span.set({"error.type": tool_outcome(result)})
        self._measure_tool(call.name, tool_outcome(result), time.monotonic() - began)
        return result

    def _measure_tool(self, name: str, outcome: str, seconds: float) -> None:
        if self.meter is not None and self.meter.recorder.enabled:
            known = name if self.tools.get(name) is not None else "unknown"
            self.meter.recorder.tool_call(known, outcome, seconds)


def tool_outcome(result: ToolResult) -> str:
    """``ok``, ``timeout`` (an error result saying it timed out) or ``error``."""
    if not result.is_error:
        return "ok"
    return "timeout" if "timed out" in result.output.lower() else "error"


def _user_message(text: str, attachments: Sequence[Attachment]) -> Message:
    """The user message of a turn: ``text``, each file named (with its path) on a line of its
    own, the files attached (their pictures are shown to the LLM)."""
    content = "\n".join([text, *(a.describe() for a in attachments)])
    return Message(role="user", content=storable(content), attachments=list(attachments))


def _turn_start(history: list[Message]) -> int:
    """Where the turn ``history`` ends with begins: its last user message (0: none in it)."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].role == "user":
            return index
    return 0


def _show_files(history: list[Message], user: Message) -> None:
    """Show the LLM ``user`` (the resumed turn's user message as this replica has its files:
    their paths here, their pictures) in place of the stored one (which names paths of the
    replica the turn began on, and carries no pictures: they are not stored)."""
    start = _turn_start(history)
    if not user.attachments or start >= len(history) or history[start].role != "user":
        return  # no files, or the window begins after the turn's user message
    history[start] = user.model_copy(update={"created_at": history[start].created_at})


def _carried_over(history: list[Message], session_id: str) -> tuple[list[Attachment], list[str]]:
    """The files the stored tool results of the turn ``history`` ends with name, as they
    may go with its answer here, and the notes about those that may not."""
    named = [
        attachment
        for message in history[_turn_start(history) :]
        if message.tool_result is not None
        for attachment in message.tool_result.attachments
    ]
    return carried_over(named, session_id) if named else ([], [])


def _rounds_begun(history: list[Message]) -> int:
    """The tool rounds of the turn ``history`` ends with (after its last user message)."""
    turn = history[_turn_start(history) :]
    return sum(bool(message.role == "assistant" and message.tool_calls) for message in turn)


def _speaker(channel_id: str, sender: str) -> Speaker | None:
    """Who wrote the turn's message; ``None`` when unknown or not storable as a person."""
    if not channel_id or not sender:
        return None
    from openpista.memory import MemoryStoreError, Speaker

    try:
        return Speaker.of(channel_id, sender)
    except MemoryStoreError:
        return None


async def _emit(sink: EventSink, event: AgentEvent) -> None:
    outcome = sink(event)
    if outcome is not None:
        await outcome
