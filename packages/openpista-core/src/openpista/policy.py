r"""The tool policy: whether a tool call runs (``allow``), never runs (``deny``) or needs the
user's approval first (``ask``), configured in ``[policy]``.

Rules (``[[policy.rules]]``) are tried in order and the first that matches decides:

- ``tool``: a glob (:mod:`fnmatch`, case-sensitive) on the tool name: ``system.run``,
  ``browser.*``, ``*``.
- ``command``: a glob on the command of a ``system.run`` call, stripped of surrounding
  whitespace and matched against the *whole* command (``ls *`` matches ``ls -la`` but not
  ``sudo ls``; note that ``ls*`` also matches ``lsblk``). A rule with a ``command`` matches
  no other tool.
- ``channels``: channel-id prefixes (``telegram:``, ``telegram:42``); empty means every channel.

**Only a literal command matches an ``allow`` rule.** The glob sees the command's text,
bash sees much more: ``ls ${x:=$'a[\x24\x28touch pwned\x29]'}$[x]`` starts with ``ls``
and runs ``touch``. So a command matches an ``allow`` rule with a ``command`` glob only when
it is *one simple command whose words are all literal* (checked by an allowlist, see
:func:`is_literal_command`):

- words are separated by spaces and made of ASCII letters, digits and ``-_./,:=+@%``;
- ``'...'`` and ``"..."`` quote any printable ASCII except ``$``, a backtick, ``\`` and
  ``!`` (so ``grep 'a|b' f`` is literal: the quotes make ``|`` plain text);
- ``~`` is allowed where it means the home directory (``~``, ``~/x``) or where bash leaves
  it alone (``file~``); ``~user``, ``~+`` are not literal;
- the first word is not an assignment (``LD_PRELOAD=x ls``) and not a shell builtin that
  runs its arguments as code (``eval``, ``source``, ``.``, ``command``, ``exec``,
  ``trap``, ``compgen``, ...).

Everything else is not literal: any ``$`` (parameters, ``$(...)``, ``$[...]``, ``$'\x..'``,
``${x@P}``), backticks, ``;``, ``&``, ``|``, redirections, ``<(...)``, ``(``, ``{a,b}``,
``!``, ``#``, backslashes, tabs, newlines inside the command, control characters and
every non-ASCII character. Such a command skips every ``allow`` rule that has a
``command`` glob and falls through to the next rules and the default (``ask`` or ``deny``).

**Globs in the command.** An unquoted ``*``, ``?``, ``[`` or ``]`` in the command is a
bash glob: bash replaces it with file names, and a file named ``-rf`` or ``--output=x``
becomes an option. Such a command matches an ``allow`` rule only when the rule spells
each of those characters as a literal (``command = "ls [*].txt"`` allows ``ls *.txt``);
a wildcard of the rule never stands for one (``ls *`` does not allow ``ls *.txt``; quote
it, ``ls '*.txt'``, to mean the text itself).

An ``allow`` rule trusts the program with every argument its glob admits: ``git *`` also
admits ``git -c core.pager='sh -c ...' log``. Allow narrow globs (``git status``,
``ls -la *``).

``deny`` and ``ask`` rules match a command when their glob matches the whole command *or*
any part of it cut at shell operators, so ``command = "rm *"`` denies ``ls; rm -rf ~``.

A ``deny`` rule on a command is a best-effort blocklist, not a sandbox: the shell has many
spellings of one command (``/bin/rm``, ``r''m``, ``{rm,-rf,~}``). To be safe, let the
default be ``ask`` or ``deny`` and ``allow`` the few commands that may run unasked.

When no rule matches, ``policy.local`` applies to local channels (ids starting with ``cli:``,
``tui:``, ``cron:`` or ``local:``, the daemon's control socket) and ``policy.remote`` to
every other channel.

A glob the :mod:`fnmatch` module cannot use matches nothing; deciding never raises.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import string
from dataclasses import dataclass
from typing import Any

from openpista.config import PolicyAction, PolicyRule, PolicySettings

__all__ = [
    "COMMAND_TOOL",
    "LOCAL_CHANNEL_PREFIXES",
    "PolicyDecision",
    "ToolPolicy",
    "is_literal_command",
    "is_local_channel",
]

log = logging.getLogger(__name__)

COMMAND_TOOL = "system.run"
"""The tool whose ``command`` argument ``command`` globs are matched against."""

LOCAL_CHANNEL_PREFIXES = ("cli:", "tui:", "cron:", "local:")
"""Channel-id prefixes of channels on the machine itself (``policy.local`` applies)."""

# What an unquoted word may be made of; everything else means more than its text says.
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "-_./,:=+@%")
_GLOB_CHARS = frozenset("*?[]")
# Inside quotes: printable ASCII (space to "~") except what bash still expands there, the
# backslash and "!" (history expansion inside double quotes in interactive shells).
_QUOTED_BANNED = frozenset("$`\\!")
_QUOTES = frozenset("'\"")
# Shell words that run their arguments (or what they build from them) as shell code, or
# turn them into arithmetic; a literal command never starts with one.
_CODE_WORDS = frozenset(
    {
        ".", "alias", "bind", "builtin", "command", "compgen", "complete", "coproc",
        "declare", "enable", "eval", "exec", "export", "fc", "function", "let", "local",
        "mapfile", "readarray", "readonly", "source", "time", "trap", "typeset",
    }
)  # fmt: skip
# How a command is cut into parts for deny/ask rules (over-splitting is harmless: a part
# is only ever used to match *more* deny/ask rules).
_SPLIT = re.compile(r"\$\(|[;&|`()<>\n\r]")
# Stands for one command glob character when checking that no rule wildcard matched it.
_SENTINEL = "\x00"


@dataclass(frozen=True, slots=True)
class _Literal:
    """A literal command: its text (stripped) and where its unquoted glob characters are."""

    text: str
    globs: tuple[int, ...]


def _scan(command: str) -> _Literal | None:
    """The command as a literal simple command, or ``None`` (see the module documentation)."""
    text = command.strip(" \t\n")
    first_end = len(text)  # where the first word ends
    first: list[str] = []  # the first word as bash sees it, quotes removed
    in_word = False
    quote: str | None = None
    globs: list[int] = []
    for index, char in enumerate(text):
        if quote is not None:
            if char == quote:
                quote = None
            elif char in _QUOTED_BANNED or not " " <= char <= "~":
                return None
            elif index < first_end:
                first.append(char)
            continue
        if char == " ":
            if in_word:
                first_end = min(first_end, index)
            in_word = False
            continue
        starts_word, in_word = not in_word, True
        if char in _QUOTES:
            quote = char
            continue
        if not _unquoted_literal(text, index, starts_word):
            return None
        if char in _GLOB_CHARS:
            globs.append(index)
        if index < first_end:
            first.append(char)
    if quote is not None or not text:
        return None  # an unterminated quote is a syntax error, not a command
    if "".join(first) in _CODE_WORDS or "=" in text[:first_end]:
        return None  # shell code, or an assignment (LD_PRELOAD=x ls)
    return _Literal(text, tuple(globs))


def _unquoted_literal(text: str, index: int, starts_word: bool) -> bool:
    """Whether the unquoted ``text[index]`` stands for itself (glob characters do: the
    caller records them)."""
    char = text[index]
    if char == "~":
        # Bash expands a tilde at the start of a word and after "=" or ":"; only a bare
        # ``~`` or ``~/`` is the home directory (not ~user, ~+, ~-, ~1).
        expands = starts_word or text[index - 1] in "=:"
        return not expands or text[index + 1 : index + 2] in ("", "/", " ")
    return char in _WORD_CHARS or char in _GLOB_CHARS


def is_literal_command(command: str) -> bool:
    """Whether ``command`` is one simple command of literal words, glob characters included
    only when quoted: what bash runs is exactly what its text says."""
    literal = _scan(command)
    return literal is not None and not literal.globs


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What the policy says about one tool call.

    ``reason`` names the rule (``rule 2 (tool='system.run', command='ls *')``) or the
    default (``default for remote channels (policy.remote)``); ``rule`` is the 1-based
    number of the matching rule, ``None`` for a default.
    """

    action: PolicyAction
    reason: str
    rule: int | None = None


class ToolPolicy:
    """Decides tool calls from ``[policy]`` settings; see the module documentation."""

    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings

    def decide(self, tool: str, arguments: dict[str, Any], channel_id: str) -> PolicyDecision:
        """The decision for calling ``tool`` with ``arguments`` on behalf of ``channel_id``."""
        for number, rule in enumerate(self.settings.rules, start=1):
            if _matches(rule, tool, arguments, channel_id):
                return PolicyDecision(rule.action, _describe(number, rule), number)
        if is_local_channel(channel_id):
            return PolicyDecision(
                self.settings.local, "default for local channels (policy.local)", None
            )
        return PolicyDecision(
            self.settings.remote, "default for remote channels (policy.remote)", None
        )


def is_local_channel(channel_id: str) -> bool:
    """Whether ``channel_id`` belongs to a channel on this machine (terminal, TUI, cron)."""
    return channel_id.startswith(LOCAL_CHANNEL_PREFIXES)


def _matches(rule: PolicyRule, tool: str, arguments: dict[str, Any], channel_id: str) -> bool:
    if not _glob(tool, rule.tool):
        return False
    if rule.channels and not any(channel_id.startswith(prefix) for prefix in rule.channels):
        return False
    if rule.command is None:
        return True
    command = arguments.get("command") if tool == COMMAND_TOOL else None
    if not isinstance(command, str):
        return False
    if rule.action == "allow":
        return _allows(rule.command, command)
    command = command.strip()
    parts = [command, *(part.strip() for part in _SPLIT.split(command))]
    return any(_glob(part, rule.command) for part in parts if part)


def _allows(pattern: str, command: str) -> bool:
    """Whether an allow rule's ``pattern`` matches ``command``: literal commands only, and
    each unquoted glob character of the command matched by a literal of the pattern."""
    literal = _scan(command)
    if literal is None or not _glob(literal.text, pattern):
        return False
    text = literal.text
    # A pattern that still matches with the glob character replaced by a sentinel (which
    # only a wildcard or a negated class can match) let a wildcard stand for it.
    return not any(
        _glob(text[:index] + _SENTINEL + text[index + 1 :], pattern) for index in literal.globs
    )


def _glob(name: str, pattern: str) -> bool:
    try:
        return fnmatch.fnmatchcase(name, pattern)
    except (re.error, ValueError, TypeError, RecursionError) as exc:
        log.warning("policy glob %r is unusable and matches nothing: %s", pattern, exc)
        return False


def _describe(number: int, rule: PolicyRule) -> str:
    parts = [f"tool={rule.tool!r}"]
    if rule.command is not None:
        parts.append(f"command={rule.command!r}")
    if rule.channels:
        parts.append(f"channels={rule.channels!r}")
    return f"rule {number} ({', '.join(parts)})"
