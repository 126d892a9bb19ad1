"""word-stats: counts and most frequent words of a text, printed as one JSON object.

The arguments arrive as a JSON object, both as the first command-line argument and on
stdin (the argument is "-" when they were too large for the command line).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from typing import Any

WORDS_PER_MINUTE = 230
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
# A plain word list reads better than a 130-item literal.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t don't it's i'm that's""".split()  # noqa: SIM905
)


def read_arguments() -> dict[str, Any]:
    raw = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else sys.stdin.read()
    arguments = json.loads(raw or "{}")
    if not isinstance(arguments, dict):
        raise ValueError("the arguments must be a JSON object")
    return arguments


def stats(text: str, top: int, include_stopwords: bool) -> dict[str, Any]:
    words = [word.lower().replace("’", "'") for word in WORD.findall(text)]
    counted = Counter(w for w in words if include_stopwords or w not in STOPWORDS)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    # Split rather than count the ends: a last sentence without a full stop still counts.
    sentences = sum(1 for part in SENTENCE_END.split(text) if WORD.search(part))
    return {
        "words": len(words),
        "unique_words": len(set(words)),
        "lines": len(text.splitlines()),
        "sentences": sentences,
        "paragraphs": len(paragraphs),
        "characters": len(text),
        "characters_no_spaces": sum(1 for c in text if not c.isspace()),
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0,
        "reading_time_minutes": round(len(words) / WORDS_PER_MINUTE, 1),
        "top_words": [[word, count] for word, count in counted.most_common(top)],
    }


def main() -> int:
    try:
        arguments = read_arguments()
        text = arguments.get("text")
        if not isinstance(text, str):
            raise ValueError("`text` (a string) is required")
        top = arguments.get("top", 10)
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
            raise ValueError("`top` must be an integer from 1 to 100")
        include_stopwords = bool(arguments.get("include_stopwords", False))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        print(f"word-stats: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats(text, top, include_stopwords), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
