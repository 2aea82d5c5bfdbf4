"""The hashing embedder: lexical similarity, stable across processes, never a zero vector."""

from __future__ import annotations

import subprocess
import sys

import pytest

from threadline.adapters.hash_embed import HashEmbedder, features, words


def similarity(a: str, b: str, dim: int = 256) -> float:
    embedder = HashEmbedder(dim=dim)
    return sum(x * y for x, y in zip(embedder.vector(a), embedder.vector(b), strict=True))


def test_shared_rare_words_score_higher_than_none() -> None:
    fact = "My locker code at the gym is 4417."
    assert similarity(fact, "What is my gym locker code?") > 0.5
    assert similarity(fact, "I like green tea in the morning.") < 0.2


def test_stop_words_do_not_make_texts_similar() -> None:
    assert similarity("what is the price of the gym", "what is the colour of the tea") < 0.2
    assert "the" not in features("the gym")


def test_plurals_and_possessives_meet() -> None:
    assert words("Anna's cats and puppies") == ["anna", "cat", "and", "puppy"]
    assert similarity("cats", "cat") == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["", "   ", "!!!", "🙂", "the of and"])
def test_every_text_gets_a_unit_vector(text: str) -> None:
    vector = HashEmbedder(dim=32).vector(text)
    assert sum(x * x for x in vector) == pytest.approx(1.0)


def test_the_same_vector_in_another_process() -> None:
    # Python's own hash() is salted per process; the embedder must not depend on it.
    code = (
        "from threadline.adapters.hash_embed import HashEmbedder; print(HashEmbedder(dim=16).vector('a b c'))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(HashEmbedder(dim=16).vector("a b c"))
