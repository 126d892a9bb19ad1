"""What ``openpista init`` hands a channel plugin: a way to ask the user a few questions.

A channel plugin implements the ``init_channel`` hook (see :mod:`openpista.hookspecs`) and
returns the ``[channels.<name>]`` table to write; it asks through :class:`StarterPrompt`, so
``openpista init --yes`` (no questions, every default) works for every channel alike.
"""

from __future__ import annotations

import click


class StarterPrompt:
    """Asks the person running ``openpista init``; with ``interactive=False`` (``--yes``) every
    question takes its default without being shown."""

    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive
        self.notes: list[str] = []

    def text(self, question: str, default: str = "", *, secret: bool = False) -> str:
        """A line of text (``default`` when the user just presses Enter); ``secret`` hides the
        typing and the default."""
        if not self.interactive:
            return default
        answer = click.prompt(
            question,
            default=default,
            hide_input=secret,
            show_default=bool(default) and not secret,
        )
        return str(answer).strip()

    def confirm(self, question: str, default: bool = False) -> bool:
        """A yes/no answer."""
        if not self.interactive:
            return default
        return bool(click.confirm(question, default=default))

    def explain(self, text: str) -> None:
        """Print ``text`` before a question (what a choice means); silent with ``--yes``."""
        if self.interactive:
            click.echo(text)

    def note(self, line: str) -> None:
        """A line printed after the config is written (the next step for this channel)."""
        self.notes.append(line)

    def expose(self, what: str, address: str, meaning: str) -> bool:
        """Ask whether ``what`` (``"the web chat"``, on ``address`` of this machine only by
        default) should listen on every network interface; ``meaning`` says what that
        exposes. The answer defaults to no; ``--yes`` never exposes anything."""
        self.explain(
            f"{what[:1].upper()}{what[1:]} listens on {address}: only this machine can reach "
            f"it. {meaning}"
        )
        return self.confirm(f"Open {what} to other machines (listen on 0.0.0.0)?", default=False)
