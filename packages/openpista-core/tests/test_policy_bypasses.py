"""Allow rules against hostile shell syntax: a corpus of known bypasses, run end to end
through the real policy and the real ``system.run``, and generated commands from a grammar of
dangerous constructs (none may be allowed) and of literal words (bash must see exactly them)."""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicySettings, SystemRunSettings
from openpista.gateway.approvals import ApprovalBroker
from openpista.memory import MemoryStore
from openpista.models import ApprovalPrompt, ToolCall
from openpista.policy import ToolPolicy, is_literal_command
from openpista.tools.registry import ToolRegistry
from openpista.tools.system_run import make_system_run_tool

CHANNEL = "telegram:42"
SESSION = "s1"
# Allow rules an operator might well write (most commands below start like one of them),
# and one that allows every literal command: only literalness may stop what follows.
RULES: list[dict[str, Any]] = [
    {"tool": "system.run", "command": "ls *", "action": "allow"},
    {"tool": "system.run", "command": "echo *", "action": "allow"},
    {"tool": "system.run", "command": "ls", "action": "allow"},
    {"tool": "system.run", "command": "*", "action": "allow"},
]

# Each of these runs `touch pwned` (or writes ./pwned) when bash runs it.
EXECUTING = [
    "ls ${x:=$'a[\\x24\\x28touch pwned\\x29]'}$[x]",  # arithmetic expansion runs a command
    "ls ${x:=$'\\x24(touch pwned)'}${x@P}",  # prompt expansion
    "ls $(touch pwned)",
    "ls `touch pwned`",
    "ls -- $(touch pwned)",
    "ls ${x:-$(touch pwned)}",
    "ls $[$(touch pwned)]",
    "echo $((1))$(touch pwned)",
    'echo "$(touch pwned)"',
    'echo "`touch pwned`"',
    "ls;touch pwned",
    "ls ; touch pwned",
    "ls && touch pwned",
    "ls --bogus || touch pwned",
    "ls | touch pwned",
    "echo x | tee pwned",
    "ls & touch pwned",
    "ls\ntouch pwned",
    "ls\r\ntouch pwned",
    "ls >(touch pwned)",
    "ls <(touch pwned)",
    "ls <<< $(touch pwned)",
    "ls$IFS;touch${IFS}pwned",
    "ls; $'\\x74ouch' pwned",
    "ls a\\\\;touch pwned",
    "ls > pwned",
    "echo x >pwned",
    "ls 2>pwned",
    "ls &>pwned",
    "echo 'a'\"b\" ;touch pwned",
    "ls {a,b};touch pwned",
    "{touch,pwned}",  # brace expansion builds the command
    "\\touch pwned",
    "t\\ouch pwned",
    "touch\tpwned",
    "$'\\x74ouch' pwned",
    "eval 'touch pwned'",
    "command eval 'touch pwned'",
    "builtin eval 'touch pwned'",
    "trap 'touch pwned' EXIT",  # runs the quoted text when the shell exits
    "compgen -C 'touch pwned' x",  # runs it to generate completions
]

# Each of these expands into something its text does not say (or hides in odd characters).
EXPANDING = [
    "ls ~root",
    "ls ~+",
    "ls ~-",
    "ls a=~root",
    "ls {a,b}",
    "ls {1..3}",
    "!!",
    "ls !!",
    "ls !-1",
    "ls ${IFS}",
    "ls$IFS-la",
    "ls $'\\x2d'la",
    "ls $HOME",
    "ls -- $(id)",
    "ls ${HOME}",
    "ls $0",
    'ls "$HOME"',
    "ls '$HOME'",
    "ls a\\;b",
    "ls \\",
    "ls\ttouch",
    "ls\rtouch",
    "ls\x0btouch",
    "ls\x00touch",
    "ls \x1b[31m",
    "ls \x7f",
    "ls\uff1btouch pwned",  # fullwidth semicolon
    "ls\u00a0-la",  # no-break space
    "ls \u200b",  # zero-width space
    "ls \u202e",  # right-to-left override
    "ls -l\u0430",  # Cyrillic a
    "ls *",
    "ls ?",
    "ls [a]",
    "ls 'unterminated",
    'ls "\\"',
    "ls #comment",
    "ls <<EOF",
    "ls <<<x",
    "LD_PRELOAD=/tmp/x.so ls",
    "eval ls",
    "'eval' ls",
    "command ls",
    ". ./ls",
    "source ls",
]


def policy(*rules: dict[str, Any], remote: str = "deny") -> ToolPolicy:
    return ToolPolicy(PolicySettings.model_validate({"remote": remote, "rules": list(rules)}))


@pytest.mark.parametrize("command", EXECUTING + EXPANDING)
def test_known_bypasses_are_not_allowed(command: str) -> None:
    assert not is_literal_command(command)
    decision = policy(*RULES).decide("system.run", {"command": command}, CHANNEL)
    assert decision.action == "deny"
    assert decision.rule is None


@pytest.fixture
async def memory(memory: MemoryStore) -> MemoryStore:
    await memory.bind_channel(CHANNEL, SESSION)
    return memory


async def test_known_bypasses_never_run_unasked(memory: MemoryStore, tmp_path: Path) -> None:
    """Through the real broker and ``system.run``: refused, and nothing was touched; run
    without the policy, each one does create the file (so each is a real attack)."""
    workspace = tmp_path / "work"
    workspace.mkdir()
    registry = ToolRegistry([make_system_run_tool(SystemRunSettings(timeout=10), workspace)])
    broker = ApprovalBroker(memory, policy(*RULES), timeout=60)
    sent: list[ApprovalPrompt] = []

    async def send(response: ApprovalPrompt) -> None:
        sent.append(response)

    guard = broker.guard(SESSION, CHANNEL, send)
    marker = workspace / "pwned"
    for number, command in enumerate(EXECUTING):
        call = ToolCall(id=f"c{number}", name="system.run", arguments={"command": command})
        refusal = await guard(call)
        assert refusal is not None, command
        assert "did not run" in refusal
        assert not marker.exists(), command
        await registry.dispatch(call)  # the control: the command really is an attack
        for _ in range(100):  # `ls & touch` may still be finishing in the background
            if marker.exists():
                break
            await asyncio.sleep(0.02)
        assert marker.exists(), f"{command!r} did not create the marker when run directly"
        marker.unlink()
    assert sent == []  # the default is deny: nobody was even asked


# -- generated commands -----------------------------------------------------------------------

LITERAL_ALPHABET = "abcXYZ019-_./,:=+@%"
QUOTED_ALPHABET = "ab ;|&<>(){}[]*?#~^='\""
PRINTF = "printf '<%s>'"  # shows each argument bash passes, one <...> each


def literal_word(rng: random.Random) -> tuple[list[str], str]:
    """A random literal word: its pieces of shell text, and the value bash gives it."""
    pieces, value = [], []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["plain", "plain", "single", "double", "tilde"])
        if kind == "plain":
            chars = "".join(rng.choice(LITERAL_ALPHABET) for _ in range(rng.randint(1, 5)))
            pieces.append(chars)
            value.append(chars)
        elif kind == "tilde":  # a tilde that is not at the start of the word
            pieces.append("x~")
            value.append("x~")
        else:
            quote = "'" if kind == "single" else '"'
            alphabet = QUOTED_ALPHABET.replace(quote, "")
            inner = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            pieces.append(f"{quote}{inner}{quote}")
            value.append(inner)
    return pieces, "".join(value)


def literal_command(rng: random.Random) -> tuple[list[str], list[str]]:
    """``printf`` with random literal words: the tokens of its text, and the values bash
    gives the words (tokens are pieces of words and the spaces between them)."""
    tokens, values = [PRINTF], []
    if rng.random() < 0.3:
        tokens += [" ", "~/x"]
        values.append(str(Path.home() / "x"))
    for _ in range(rng.randint(1, 5)):
        pieces, value = literal_word(rng)
        tokens += [" ", *pieces]
        values.append(value)
    return tokens, values


DANGEROUS = [
    "$(touch pwned)", "`touch pwned`", "${IFS}", "$IFS", "$'\\x41'", '$"x"', "$[1+1]",
    "$((1+1))", "${x@P}", "${x:=y}", "$x", "$0", "$$", "<(id)", ">(id)", ";", "&", "&&", "|",
    "||", "\n", "\r", "\t", "\x0b", "\x00", "\x1b", "\x7f", ">", ">>", "<", "<<<",
    "<<EOF", "2>&1", "&>", "!!", "!-1", "!x", "{a,b}", "{1..3}", "{", "}", "\\;", "\\ ",
    "\\", "#", "(", ")", "*", "?", "[a]", "]", "^", "\uff1b", "\u00a0", "\u200b",
    "\u202e", "\u0430", "\u2028", "\x85",
    '"a$(id)b"', '"a`id`b"', '"${IFS}"', '"$x"', '"$[1]"', '"$((1))"', '"a\\b"', '"!!"',
    "'$x'", "'a`b'", "'a\\b'",
]  # fmt: skip
TILDES = ["~root", "~+", "~-", "~1", "~x/y"]  # dangerous at the start of a word
PREFIXES = ["X=1 ", "LD_PRELOAD=/tmp/x.so ", "eval ", ". ", "source ", "command ", "exec "]


def dangerous_command(rng: random.Random) -> str:
    """A literal command with one to three dangerous constructs put between its pieces."""
    tokens, _ = literal_command(rng)
    prefix = ""
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.1:
            prefix = rng.choice(PREFIXES)
            continue
        fragment = rng.choice(DANGEROUS) if roll > 0.2 else " " + rng.choice(TILDES)
        tokens.insert(rng.randint(1, len(tokens)), fragment)
    return prefix + "".join(tokens) + " end"  # (whitespace at the end would be stripped)


def test_generated_dangerous_commands_are_never_allowed() -> None:
    rng = random.Random(20261202)
    everything = policy({"tool": "system.run", "command": "*", "action": "allow"})
    for _ in range(5000):
        command = dangerous_command(rng)
        decision = everything.decide("system.run", {"command": command}, CHANNEL)
        assert decision.action == "deny", repr(command)


def test_generated_literal_commands_are_allowed_and_mean_what_they_say(tmp_path: Path) -> None:
    """The oracle is bash itself: it must see exactly the words the text spells."""
    rng = random.Random(42)
    everything = policy({"tool": "system.run", "command": "*", "action": "allow"})
    cases = [literal_command(rng) for _ in range(300)]
    script = []
    for tokens, _ in cases:
        command = "".join(tokens)
        assert is_literal_command(command), repr(command)
        assert everything.decide("system.run", {"command": command}, CHANNEL).action == "allow"
        script.append(f"{command}; echo")
    shown = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    ).stdout.splitlines()
    assert shown == ["".join(f"<{value}>" for value in values) for _, values in cases]


@pytest.mark.parametrize(
    ("pattern", "command", "allowed"),
    [
        ("ls *", "ls *.txt", False),  # the rule's wildcard would stand for the glob
        ("ls [*].txt", "ls *.txt", True),  # the rule spells the glob itself
        ("ls [*]*", "ls **", False),  # the second star is only matched by a wildcard
        ("ls [*][*]", "ls **", True),
        ("ls [!a].txt", "ls *.txt", False),  # a negated class is a wildcard too
        ("ls *", "ls '*.txt'", True),  # quoted: plain text, no glob
        ("cat file[?]", "cat file?", True),
        ("cat file?", "cat file?", False),
    ],
)
def test_command_globs_need_the_rule_to_spell_them(
    pattern: str, command: str, allowed: bool
) -> None:
    rules = policy({"tool": "system.run", "command": pattern, "action": "allow"})
    assert (rules.decide("system.run", {"command": command}, CHANNEL).action == "allow") is allowed
