"""Outbound attachments: a channel sends bytes, or a file openpista itself wrote, nothing else.

The gateway passes every outbound message through :func:`screen` before any adapter sees it, so
that no channel ever opens a path or fetches a URL that an LLM, a tool or a worker chose:

- inline ``data`` is kept (a ``path`` or ``url`` next to it is dropped);
- a ``path`` is kept only when it names a regular file (not a symlink, no other hard link)
  inside :func:`openpista.files.turn_output_dir` of the response's session, checked one
  component at a time without following symlinks;
- a ``url`` is kept only as a base64 ``data:`` URL, which becomes inline ``data``; any
  other URL is dropped.

A dropped attachment is named, with the reason, in a short note appended to the answer.

:func:`carried_over` screens the files a turn cut short on another replica produced before
the cut (named by its stored tool results) for the answer of the turn continuing it here.

:func:`inlined` goes one step further for a message another machine delivers (a cluster
replica holding the user's connection): each kept file travels as its bytes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os

from openpista.files import (
    AbsentFileError,
    ConfinementError,
    open_confined,
    read_confined,
    turn_output_dir,
)
from openpista.models import Answer, Attachment, Outbound, ToolProgress

log = logging.getLogger(__name__)


def screen(message: Outbound) -> Outbound:
    """``message`` with only the attachments a channel may send (see the module docs); an
    answer that lost some says so in its text."""
    if isinstance(message, Answer):
        kept, notes = _screened(message.attachments, message.session_id)
        if not notes and kept == message.attachments:
            return message
        return noted(message, notes).model_copy(update={"attachments": kept})
    if isinstance(message, ToolProgress) and message.result and message.result.attachments:
        result = message.result
        tool_kept, _ = _screened(result.attachments, message.session_id)
        if tool_kept != result.attachments:
            update = {"result": result.model_copy(update={"attachments": tool_kept})}
            return message.model_copy(update=update)
    return message


def inlined(message: Outbound, max_bytes: int) -> Outbound:
    """``message`` :func:`screen`-ed, with each kept file's bytes inline instead of its path
    (a file over ``max_bytes`` is dropped with a note), for a machine that cannot open this
    one's files."""
    message = screen(message)
    if isinstance(message, Answer) and any(a.path for a in message.attachments):
        kept, notes = _inline(message.attachments, message.session_id, max_bytes)
        return noted(message, notes).model_copy(update={"attachments": kept})
    if isinstance(message, ToolProgress) and message.result and message.result.attachments:
        result = message.result
        kept, _ = _inline(result.attachments, message.session_id, max_bytes)
        update = {"result": result.model_copy(update={"attachments": kept})}
        return message.model_copy(update=update)
    return message


def noted(answer: Answer, notes: list[str]) -> Answer:
    """``answer`` with ``notes`` (about files it does not carry), one a line, after its text."""
    if not notes:
        return answer
    text = "\n\n".join(part for part in (answer.text, "\n".join(notes)) if part)
    return answer.model_copy(update={"text": text})


SHOWN_ABSENT = 10
"""How many names of files not on this replica :func:`carried_over` lists (then a count)."""


def carried_over(
    attachments: list[Attachment], session_id: str
) -> tuple[list[Attachment], list[str]]:
    """The files a turn's earlier rounds produced (``attachments``, from its stored tool
    results: data, never trusted) that may go with the answer of the turn continuing it
    here, and the notes for its text.

    Each is screened as :func:`screen` screens a fresh turn's files (a path is kept only as
    a regular file of ``session_id``'s outbox, opened one component at a time, never through
    a symlink or ``..``; a refused one gets its note). Those that are not here are named
    together in one line: written on the replica the turn began on, or held there as bytes
    (a screenshot's inline data is not stored with its tool result).
    """
    absent: list[str] = []
    kept, notes = _screened(attachments, session_id, absent)
    if absent:
        more = len(absent) - SHOWN_ABSENT
        names = ", ".join(absent[:SHOWN_ABSENT]) + (f" and {more} more" if more > 0 else "")
        notes.append(
            f"❌ not sent, made before this turn moved to this replica and not here: {names}"
        )
    return kept, notes


def _inline(
    attachments: list[Attachment], session_id: str, max_bytes: int
) -> tuple[list[Attachment], list[str]]:
    kept: list[Attachment] = []
    notes: list[str] = []
    for item in attachments:
        if item.path is None:
            kept.append(item)
            continue
        root = turn_output_dir(session_id)
        prefix = f"{root}{os.sep}"
        try:
            if not item.path.startswith(prefix):
                raise ConfinementError("only files openpista wrote for this chat are sent")
            data = read_confined(root, item.path[len(prefix) :], max_bytes)
        except (ConfinementError, OSError) as exc:
            log.warning("outbound attachment %r dropped: %s", item.name[:80], exc)
            notes.append(f"❌ attachment {item.name[:80]!r} was not sent: {exc}")
            continue
        update = {"data": base64.b64encode(data).decode(), "path": None}
        kept.append(item.model_copy(update=update))
    return kept, notes


def _screened(
    attachments: list[Attachment], session_id: str, absent: list[str] | None = None
) -> tuple[list[Attachment], list[str]]:
    """The attachments that may be sent and a note for each other one; with ``absent``, the
    names of those with no file there go to it instead of a note each."""
    kept: list[Attachment] = []
    notes: list[str] = []
    for item in attachments:
        try:
            kept.append(_checked(item, session_id))
        except ConfinementError as exc:
            if absent is not None and (isinstance(exc, AbsentFileError) or _held(item)):
                absent.append(repr(item.name[:80]))
                continue
            log.warning("outbound attachment %r dropped: %s", item.name[:80], exc)
            notes.append(f"❌ attachment {item.name[:80]!r} was not sent: {exc}")
    return kept, notes


def _held(item: Attachment) -> bool:
    """Whether ``item`` is named only: its bytes were held inline (by a turn on another
    replica; they are not stored)."""
    return item.data is None and item.path is None and item.url is None


def _checked(item: Attachment, session_id: str) -> Attachment:
    """``item`` as it may be sent; ConfinementError saying why it may not."""
    if item.data is not None:
        if item.path is None and item.url is None:
            return item
        return item.model_copy(update={"path": None, "url": None})
    if item.path is not None:
        _check_path(item.path, session_id)
        return item.model_copy(update={"url": None})
    if item.url is not None:
        return item.model_copy(update={"url": None, "data": _data_url_payload(item.url)})
    raise ConfinementError("it has no content")


def _check_path(path: str, session_id: str) -> None:
    if not session_id:
        raise ConfinementError("only files openpista wrote for this chat are sent")
    try:
        root = turn_output_dir(session_id)
    except OSError as exc:
        raise ConfinementError(f"openpista's outbox cannot be opened ({exc.strerror})") from None
    prefix = f"{root}{os.sep}"
    if not path.startswith(prefix):
        raise ConfinementError("only files openpista wrote for this chat are sent")
    os.close(open_confined(root, path[len(prefix) :]))


def _data_url_payload(url: str) -> str:
    """The base64 payload of a ``data:...;base64,`` URL; ConfinementError for other URLs."""
    head, comma, payload = url.partition(",")
    if not (head.lower().startswith("data:") and head.lower().endswith(";base64") and comma):
        raise ConfinementError("links are not fetched; only inline data is sent")
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ConfinementError("its data: URL is not valid base64") from None
    return payload
