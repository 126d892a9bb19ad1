"""The LLM emulator's embeddings: deterministic hashed bag-of-words vectors.

:func:`hashed_embedding` is no language model. A text's features are its words (letters
and digits, case folded) and each word's character trigrams (``"<vacuum>"`` gives
``<va``, ``vac``, …, ``um>``); every feature adds ±1 to one of ``dimensions`` coordinates
chosen by its CRC-32 (the sign by the top bit), and the sum is L2-normalised. So two
texts are similar exactly when they share words or parts of words ("vacuuming" is near
"vacuum", "db" is not near "database"): enough to test that vector search finds what
all-words full-text search misses, honestly and the same on every run.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import zlib
from typing import Any

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096
MAX_INPUTS = 2048

_WORD = re.compile(r"[^\W_]+")


def hashed_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The emulator's vector of ``text`` (all zeros for a text without words)."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.casefold()):
        marked = f"<{word}>"
        for feature in [word, *(marked[i : i + 3] for i in range(len(marked) - 2))]:
            number = zlib.crc32(feature.encode())
            vector[number % dimensions] += 1.0 if number >> 31 else -1.0
    length = math.sqrt(sum(x * x for x in vector))
    return [x / length for x in vector] if length else vector


def embeddings_answer(body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
    """An OpenAI ``POST /v1/embeddings`` answer to ``body``: (200, the response) or
    (400, what is wrong with the request)."""
    model, given = body.get("model"), body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(model, str) or not model:
        return 400, "model: field required"
    if not isinstance(texts, list) or not texts or len(texts) > MAX_INPUTS:
        return 400, f"input: a text or a list of 1 to {MAX_INPUTS} texts"
    if not all(isinstance(item, str) for item in texts):
        return 400, "input: every item must be text"
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        return 400, "dimensions: an integer"
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        return 400, f"dimensions: from 1 to {MAX_DIMENSIONS}"
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return 400, "encoding_format: 'float' or 'base64'"
    data = []
    for index, text in enumerate(texts):
        vector = hashed_embedding(text, dimensions)
        value: list[float] | str = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(len(_WORD.findall(text)) for text in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, {"object": "list", "data": data, "model": model, "usage": usage}
