"""What a run cost: a versioned price table per model, read from TOML or JSON, applied to a usage."""

from __future__ import annotations

import json
import re
import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path

import msgspec

from threadline.domain.models import Usage

BUILT_IN = "prices.toml"
PER_TOKENS = Decimal(1_000_000)
# Dated snapshots take their base model's price: gpt-4o-2024-08-06 → gpt-4o, gpt-4-0613 → gpt-4.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_COST_PLACES = Decimal("0.00000001")  # usage_events.cost_usd is numeric(14, 8)


class PriceTableError(ValueError):
    """A price table file Threadline cannot use."""


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """US dollars per million tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        dollars = (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + usage.completion_tokens * self.output
        ) / PER_TOKENS
        return dollars.quantize(_COST_PLACES)


class PriceTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: str
    models: dict[str, ModelPrice]

    def price(self, model: str) -> ModelPrice | None:
        found = self.models.get(model)
        if found is None and (base := _SNAPSHOT.sub("", model)) != model:
            found = self.models.get(base)
        return found

    def cost(self, model: str, usage: Usage) -> Decimal | None:
        """The run's cost in US dollars; None for a model the table does not price."""
        price = self.price(model)
        return None if price is None else price.cost(usage)


def parse_price_table(raw: bytes, *, toml: bool) -> PriceTable:
    try:
        document = tomllib.loads(raw.decode()) if toml else json.loads(raw)
        table = msgspec.convert(document, PriceTable)
    except (ValueError, msgspec.ValidationError) as error:
        raise PriceTableError(f"not a price table: {error}") from None
    if not table.version.strip():
        raise PriceTableError("`version` must not be empty")
    for name, price in table.models.items():
        values = [
            price.input,
            price.output,
            *([price.cached_input] if price.cached_input is not None else []),
        ]
        if any(value < 0 or not value.is_finite() for value in values):
            raise PriceTableError(f"prices of {name!r} must be finite and not negative")
    return table


def load_price_table(path: Path | None) -> PriceTable:
    """The table in `path` (TOML unless it ends in .json), or the built-in one."""
    if path is None:
        return parse_price_table(resources.files(__package__).joinpath(BUILT_IN).read_bytes(), toml=True)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PriceTableError(f"cannot read the price table {path}: {error.strerror}") from None
    try:
        return parse_price_table(raw, toml=path.suffix.lower() != ".json")
    except PriceTableError as error:
        raise PriceTableError(f"{path}: {error}") from None
