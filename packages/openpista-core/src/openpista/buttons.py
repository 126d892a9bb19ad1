"""The Approve / Deny buttons of an approval request, alike on every channel that has buttons.

Each button's id (callback data) is ``<verb>:<request id>`` (:func:`button_id`); a press is
read back with :func:`pressed` and handed to the gateway as the chat command
``/<verb> <request id>``, as if the user had typed it::

    for verb, label in BUTTONS:
        keyboard.add(label, data=button_id(verb, request.id))
    ...
    button = pressed(data)
    if button is None:
        reply(STALE)
"""

from __future__ import annotations

import re

__all__ = ["ANSWERED", "BUTTONS", "STALE", "button_id", "pressed", "verdict"]

BUTTONS = (("approve", "✅ Approve"), ("deny", "🚫 Deny"))
"""Each approval button's verb and label, in the order shown."""
ANSWERED = "This request was already answered or has expired."
"""The reply to a press on a request that no longer waits for an answer."""
STALE = "This button is no longer valid."
"""The reply to a press whose id is not an approval button's."""
_PRESSED = re.compile(r"(approve|deny):([0-9A-Za-z]{1,32})")


def button_id(verb: str, request_id: str) -> str:
    """The id of ``verb``'s button for approval request ``request_id``."""
    return f"{verb}:{request_id}"


def pressed(button: str) -> tuple[str, str] | None:
    """The verb and request id of an approval button's id; ``None`` for any other text."""
    match = _PRESSED.fullmatch(button)
    return (match[1], match[2]) if match else None


def verdict(verb: str, by: str) -> str:
    """What a decided prompt shows: ``✅ Approved by <by>`` or ``🚫 Denied by <by>``."""
    return ("✅ Approved" if verb == "approve" else "🚫 Denied") + f" by {by}"
