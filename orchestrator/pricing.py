"""Estimated cost from a price table the user can set per model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigError
from orchestrator.results import Usage


class ModelPrice(BaseModel):
    """Dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0


@dataclass
class PriceTable:
    """Prices by model spec (``openai:gpt-4o-mini``) or bare model name; unknown models cost 0."""

    prices: dict[str, ModelPrice] = field(default_factory=dict)

    def cost(self, model: str, usage: Usage) -> float:
        price = self.prices.get(model) or self.prices.get(model.split(":", 1)[-1])
        if price is None:
            return 0.0
        return round((usage.input_tokens * price.input + usage.output_tokens * price.output)
                     / 1_000_000, 6)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """A JSON or YAML mapping ``model: {input: $/1M, output: $/1M}``."""
        file = Path(path)
        try:
            text = file.read_text("utf-8")
            data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: cannot read the price table: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: a price table maps model names to input/output prices")
        try:
            return cls({str(k): ModelPrice.model_validate(v) for k, v in data.items()})
        except ValidationError as exc:
            raise ConfigError(f"{file}: invalid price: {exc.errors()[0]['msg']}") from None
