"""The tool policy: whether a tool call runs (``allow``), never runs (``deny``) or needs the
user's approval first (``ask``), configured in ``[policy]``.

Rules (``[[policy.rules]]``) are tried in order and the first that matches decides:

- ``tool``: a glob (:mod:`fnmatch`, case-sensitive) on the tool name: ``system.run``,
  ``browser.*``, ``*``.
- ``command``: a glob on the command of a ``system.run`` call, stripped of surrounding
  whitespace and matched against the *whole* command (``ls *`` matches ``ls -la`` but not
  ``sudo ls``; note that ``ls*`` also matches ``lsblk``). A rule with a ``command`` matches
  no other tool.
- ``channels``: channel-id prefixes (``telegram:``, ``telegram:42``); empty means every channel.

**Compound commands never match an ``allow`` rule.** A command that contains a shell
control operator, a subshell or a substitution (``;``, ``&``, ``&&``, ``|``, ``||``, a
backtick, ``$(``, ``(``, ``)``, ``<``, ``>``, a newline or carriage return) could run more
than the allowed prefix says:
``ls; rm -rf ~`` starts with ``ls``. Such a command skips every ``allow`` rule that has a
``command`` glob and falls through to the next rules and the default; this also applies when
the operator is quoted (``grep 'a|b' f``), which errs on the safe side. ``deny`` and ``ask``
rules match a compound command when their glob matches the whole command *or* any of its
parts, so ``command = "rm *"`` denies ``ls; rm -rf ~``.

A ``deny`` rule on a command is a best-effort blocklist, not a sandbox: the shell has many
spellings of one command (``/bin/rm``, ``r''m``, ``{rm,-rf,~}``). To be safe, let the
default be ``ask`` or ``deny`` and ``allow`` the few commands that may run unasked.

When no rule matches, ``policy.local`` applies to local channels (ids starting with ``cli:``,
``tui:`` or ``cron:``) and ``policy.remote`` to every other channel.

A glob the :mod:`fnmatch` module cannot use matches nothing; deciding never raises.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from typing import Any

from openpista.config import PolicyAction, PolicyRule, PolicySettings

__all__ = [
    "COMMAND_TOOL",
    "LOCAL_CHANNEL_PREFIXES",
    "PolicyDecision",
    "ToolPolicy",
    "is_compound_command",
    "is_local_channel",
]

log = logging.getLogger(__name__)

COMMAND_TOOL = "system.run"
"""The tool whose ``command`` argument ``command`` globs are matched against."""

LOCAL_CHANNEL_PREFIXES = ("cli:", "tui:", "cron:")
"""Channel-id prefixes of channels on the machine itself (``policy.local`` applies)."""

# Shell control operators, redirections and substitutions: with any of these a command can
# do more than its first word says. Deliberately broad (quotes are not parsed).
_COMPOUND = re.compile(r"[;&|`()<>\n\r]")
# How a compound command is cut into parts for deny/ask rules (over-splitting is harmless:
# a part is only ever used to match *more* deny/ask rules).
_SPLIT = re.compile(r"\$\(|[;&|`()<>\n\r]")


def is_compound_command(command: str) -> bool:
    """Whether ``command`` contains a shell control operator, redirection or substitution."""
    return _COMPOUND.search(command) is not None


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
    command = command.strip()
    if not is_compound_command(command):
        return _glob(command, rule.command)
    if rule.action == "allow":
        return False
    parts = [command, *(part.strip() for part in _SPLIT.split(command))]
    return any(_glob(part, rule.command) for part in parts if part)


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
