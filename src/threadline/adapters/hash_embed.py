"""`HashEmbedder`: lexical vectors by signed feature hashing, the offline default (no model, no network).

Words are lower-cased, English stop words dropped, plural and possessive endings trimmed; every word
and every pair of neighbouring words is hashed (BLAKE2b, so vectors are the same in every process
and on every machine) into one of `dim` buckets with a sign taken from the same hash, weighted by
1 + log(count), and the vector is scaled to unit length. Texts sharing rare words land close;
texts sharing nothing are orthogonal in expectation. It matches words, not meanings: "car" does
not find "automobile". Use the OpenAI-compatible embedder for that.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence

VERSION = "hash-v1"
BIGRAM_WEIGHT = 0.7
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also please let lets i'm i've i'd i'll it's that's what's
don't does doesn't
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def words(text: str) -> list[str]:
    return [_stem(word) for word in _WORD.findall(text.lower())]


def _stem(word: str) -> str:
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def features(text: str) -> Counter[str]:
    """The hashed features of `text` and their counts: content words and neighbouring pairs of them.

    A text of stop words only keeps its words; a text of no words (emoji, punctuation) its character
    trigrams: every text gets a non-zero vector, which cosine distance needs.
    """
    every = words(text)
    content = [word for word in every if word not in STOP_WORDS] or every
    counted: Counter[str] = Counter(content)
    counted.update(f"{first} {second}" for first, second in itertools.pairwise(content))
    if not counted:
        squeezed = "".join(text.split())
        counted.update(squeezed[i : i + 3] for i in range(max(1, len(squeezed) - 2)))
    return counted


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return digest % dim, 1.0 if digest >> 63 else -1.0


class HashEmbedder:
    """The `Embedder` port without a model: deterministic, lexical, microseconds per message."""

    def __init__(self, *, dim: int) -> None:
        self.dim = dim
        self.name = VERSION

    def vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for feature, count in features(text).items():
            index, sign = _bucket(feature, self.dim)
            weight = 1.0 + math.log(count)
            vector[index] += sign * (BIGRAM_WEIGHT * weight if " " in feature else weight)
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            # Every feature cancelled out (possible, if unlikely, with signed hashing).
            vector[_bucket(text, self.dim)[0]] = norm = 1.0
        return [x / norm for x in vector]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]
