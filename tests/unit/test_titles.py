"""Titles: the trimmed first message, and a model's answer cleaned into a title."""

from __future__ import annotations

import pytest

from threadline.service.titles import MAX_TITLE_CHARS, clean_title, trimmed_title


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plan a trip to Lisbon", "Plan a trip to Lisbon"),
        ("  lots\n\tof   space  ", "lots of space"),
        ("one two three four five six seven eight nine ten", "one two three four five six seven eight…"),
    ],
)
def test_a_trimmed_title_is_the_first_words_on_one_line(text: str, expected: str) -> None:
    assert trimmed_title(text) == expected


def test_a_trimmed_title_is_capped_in_characters() -> None:
    title = trimmed_title("x" * 500)
    assert len(title) == MAX_TITLE_CHARS
    assert title.endswith("…")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Lisbon Trip Plans", "Lisbon Trip Plans"),
        ('"Lisbon Trip Plans."', "Lisbon Trip Plans"),
        ("Title: Lisbon Trip Plans", "Lisbon Trip Plans"),
        ("**Lisbon Trip**\nHere is why...", "Lisbon Trip"),
        ("\n\n  “Quoted”  \n", "Quoted"),
        ("", ""),
    ],
)
def test_a_models_answer_is_cleaned(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected
