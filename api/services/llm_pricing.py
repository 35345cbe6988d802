"""Usage into dollars, from the price table (MODEL_PRICES over config.DEFAULT_MODEL_PRICES),
and a call's cost estimated before it is made.

Costs are kept as integer nanodollars (1e-9 USD) wherever they are added up: Firestore
increments integers exactly, and a cache read of a small model costs a tenth of a
microdollar per token. They are estimates from the table, not Anthropic's invoice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

NANOS_PER_USD = 1_000_000_000
# Per million tokens in the table: nanodollars per token = USD per MTok * 1000.
NANOS_PER_USD_PER_MTOK = NANOS_PER_USD // 1_000_000
# What an image costs as input at most (Anthropic resizes larger ones to ~1.15 MP,
# about 1,600 tokens: https://docs.anthropic.com/en/docs/build-with-claude/vision).
IMAGE_TOKENS = 1_600
# Input tokens are estimated as bytes / 3: JSON and English run near 4 bytes a token,
# code and other scripts nearer 3, so this is an upper bound for nearly every body.
BYTES_PER_TOKEN = 3


@dataclass(frozen=True)
class ModelPrice:
    """Nanodollars per token."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost_nanos(self, usage: Mapping[str, object]) -> int:
        """A Messages API `usage` (input, output, cache writes and reads) in nanodollars."""
        return round(
            _count(usage, "input_tokens") * self.input
            + _count(usage, "output_tokens") * self.output
            + _count(usage, "cache_creation_input_tokens") * self.cache_write
            + _count(usage, "cache_read_input_tokens") * self.cache_read
        )


class PriceTable:
    def __init__(self, table: Mapping[str, Mapping[str, float]]) -> None:
        self._prices = {
            model: ModelPrice(
                p["input"] * NANOS_PER_USD_PER_MTOK,
                p["output"] * NANOS_PER_USD_PER_MTOK,
                p["cacheWrite"] * NANOS_PER_USD_PER_MTOK,
                p["cacheRead"] * NANOS_PER_USD_PER_MTOK,
            )
            for model, p in table.items()
        }

    def price(self, model: str) -> ModelPrice | None:
        """The entry of `model`, or of the longest entry it starts with (a dated id such
        as claude-haiku-4-5-20251001 takes claude-haiku-4-5's); None when there is none."""
        if model in self._prices:
            return self._prices[model]
        prefixes = [name for name in self._prices if model.startswith(name + "-")]
        return self._prices[max(prefixes, key=len)] if prefixes else None

    def no_dearer(self, helper: str, model: str) -> bool:
        """Whether `helper` costs no more than `model`, per token of each kind."""
        cheap, dear = self.price(helper), self.price(model)
        if cheap is None or dear is None:
            return False
        return cheap.input <= dear.input and cheap.output <= dear.output


def usd(nanos: int) -> float:
    return round(nanos / NANOS_PER_USD, 6)


def nanos(dollars: float) -> int:
    return math.floor(dollars * NANOS_PER_USD)


def estimate_input_tokens(body: Mapping[str, object]) -> tuple[int, bool]:
    """An upper-ish bound on a request's input tokens, from its size (what it would cost
    to be wrong is one call's overshoot, so no count_tokens round trip is paid for it),
    and whether it marks cache breakpoints (its input may be written to the cache, the
    dearest way to send it). Base64 images count as what Anthropic bills for them, not
    their bytes."""
    images = 0
    cached = False

    def without_images(value: object) -> object:
        nonlocal images, cached
        if isinstance(value, dict):
            if value.get("type") == "image":
                images += 1
                return None
            cached = cached or "cache_control" in value
            return {k: without_images(v) for k, v in value.items()}
        if isinstance(value, list):
            return [without_images(v) for v in value]
        return value

    rest = without_images({k: v for k, v in body.items() if k != "max_tokens"})
    size = len(json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode())
    return math.ceil(size / BYTES_PER_TOKEN) + images * IMAGE_TOKENS, cached


def _count(usage: Mapping[str, object], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
