"""The price table: built-in prices, snapshots, cached input, files of your own, and bad files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from threadline.domain.models import Usage
from threadline.domain.pricing import PriceTableError, load_price_table, parse_price_table


def usage(prompt: int = 0, completion: int = 0, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        total_tokens=prompt + completion,
        source="measured",
    )


def test_the_built_in_table_prices_common_models_and_the_echo_model_for_free() -> None:
    table = load_price_table(None)
    assert table.version == "openai-2025-08"
    # 1M prompt tokens of gpt-4o-mini cost $0.15 and 1M completion tokens $0.60.
    assert table.cost("gpt-4o-mini", usage(1_000_000, 1_000_000)) == Decimal("0.75")
    assert table.cost("gpt-4o", usage(2_000, 500)) == Decimal("0.01")
    assert table.cost("threadline-echo", usage(5_000, 5_000)) == 0


def test_cached_prompt_tokens_cost_the_cached_price_and_reasoning_is_output() -> None:
    table = load_price_table(None)
    # 1,000 prompt tokens of which 400 cached: 600 x 0.15 + 400 x 0.075 = 120 micro-dollars; 200 out x 0.6.
    assert table.cost("gpt-4o-mini", usage(1_000, 200, cached=400)) == Decimal("0.00024")
    # Reasoning tokens are inside completion_tokens already: they add nothing on top.
    assert table.cost("o4-mini", usage(0, 1_000, reasoning=800)) == Decimal("0.0044")


def test_dated_snapshots_take_their_base_price_but_other_variants_do_not() -> None:
    table = load_price_table(None)
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("gpt-3.5-turbo-0125") == table.price("gpt-3.5-turbo")
    # o1-pro is not o1: guessing would under-price it tenfold.
    assert table.price("o1-pro") is None
    assert table.cost("my-local-llama", usage(10, 10)) is None


def test_a_table_of_your_own_in_toml_or_json(tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text('version = "acme-1"\n[models.m]\ninput = 1\noutput = 2\ncached_input = 0.5\n')
    json = tmp_path / "prices.json"
    json.write_text('{"version": "acme-2", "models": {"m": {"input": "1.5", "output": 3}}}')
    assert load_price_table(toml).cost("m", usage(1_000_000, 1_000_000, cached=1_000_000)) == Decimal("2.5")
    table = load_price_table(json)
    assert table.version == "acme-2"
    # Without a cached price, cached tokens cost the input price.
    assert table.cost("m", usage(1_000_000, 0, cached=500_000)) == Decimal("1.5")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('version = "v"\n[models.m]\ninput = -1\noutput = 1\n', "not negative"),
        ('version = ""\n[models]\n', "must not be empty"),
        ("[models.m]\ninput = 1\noutput = 1\n", "not a price table"),
        ('version = "v"\n[models.m]\ninput = 1\n', "not a price table"),
        ('version = "v"\n[models.m]\ninput = 1\noutput = 1\ncache = 1\n', "not a price table"),
        ("version = ", "not a price table"),
    ],
)
def test_a_bad_table_is_refused_with_its_path_and_reason(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(PriceTableError, match=complaint) as caught:
        load_price_table(path)
    assert str(path) in str(caught.value)


def test_a_missing_table_file_is_refused() -> None:
    with pytest.raises(PriceTableError, match="cannot read"):
        load_price_table(Path("/nonexistent/prices.toml"))


def test_costs_keep_eight_decimal_places_like_the_column() -> None:
    table = parse_price_table(b'version = "v"\n[models.m]\ninput = 0.123456789\noutput = 0\n', toml=True)
    assert table.cost("m", usage(1_000_000)) == Decimal("0.12345679")
