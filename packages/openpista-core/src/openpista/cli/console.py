"""Line-oriented terminal output for commands that print answers (``openpista start``'s
terminal channel, plugin commands such as ``openpista connect``)."""

from __future__ import annotations

from typing import IO


class Console:
    """One line-oriented writer for the terminal, so that interleaved answers never share
    a line: output from another source first ends the line that a stream left open."""

    def __init__(self, stdout: IO[str], stderr: IO[str]) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self._open: str | None = None  # the source whose streamed line is unfinished
        self._streamed: dict[str, list[str]] = {}

    def stream(self, key: str, text: str) -> None:
        """Write a chunk of ``key``'s answer as it arrives."""
        if not text:
            return
        if self._open not in (None, key):
            self.end_line()
        self._streamed.setdefault(key, []).append(text)
        self.stdout.write(text)
        self.stdout.flush()
        self._open = None if text.endswith("\n") else key

    def finish_stream(self, key: str) -> str:
        """End ``key``'s stream; returns what it streamed since it last ended."""
        if self._open == key:
            self.end_line()
        return "".join(self._streamed.pop(key, []))

    def line(self, text: str, err: bool = False, dim: bool = False) -> None:
        """Write ``text`` as whole lines on standard output (or error)."""
        self.end_line()
        stream = self.stderr if err else self.stdout
        if dim and _is_tty(stream):
            text = f"\x1b[2m{text}\x1b[0m"
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()

    def end_line(self) -> None:
        """Finish a streamed line left open, if any."""
        if self._open is not None:
            self._open = None
            self.stdout.write("\n")
            self.stdout.flush()


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
