"""The price table: usage into dollars, dated model ids, MODEL_PRICES, the input estimate."""

from __future__ import annotations

import pytest

from api.config import DEFAULT_MODEL_PRICES, Settings
from api.services.llm_pricing import PriceTable, estimate_input_tokens, usd


def test_usage_is_priced_per_kind_of_token():
    table = PriceTable(DEFAULT_MODEL_PRICES)
    usage = {
        "input_tokens": 1_000,
        "output_tokens": 200,
        "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 2_000,
    }
    price = table.price("claude-sonnet-4-6")
    assert price is not None
    assert usd(price.cost_nanos(usage)) == pytest.approx(0.003 + 0.003 + 0.003 + 0.0075)


def test_a_dated_model_takes_the_longest_entry_it_starts_with():
    table = PriceTable(DEFAULT_MODEL_PRICES)
    assert table.price("claude-haiku-4-5-20251001") == table.price("claude-haiku-4-5")
    assert table.price("claude-opus-4-7") != table.price("claude-opus-4")
    assert table.price("claude-2.0") is None
    assert table.no_dearer("claude-haiku-4-5", "claude-sonnet-4-6")
    assert not table.no_dearer("claude-opus-4-7", "claude-sonnet-4-6")


def test_model_prices_from_the_environment_are_merged_over_the_defaults(monkeypatch):
    monkeypatch.setenv(
        "MODEL_PRICES",
        '{"my-model": {"input": 1, "output": 2, "cacheWrite": 1.25, "cacheRead": 0.1}}',
    )
    prices = Settings.from_env().model_prices
    assert prices["my-model"]["output"] == 2.0
    assert prices["claude-haiku-4-5"] == DEFAULT_MODEL_PRICES["claude-haiku-4-5"]
    monkeypatch.setenv("MODEL_PRICES", '{"my-model": {"input": 1}}')
    with pytest.raises(ValueError, match="cacheRead"):
        Settings.from_env()


def test_input_is_estimated_from_the_size_with_images_at_their_token_price():
    text = {"messages": [{"role": "user", "content": "x" * 3_000}], "max_tokens": 10}
    tokens, cached = estimate_input_tokens(text)
    assert 1_000 <= tokens < 1_020 and not cached
    image = {"type": "image", "source": {"type": "base64", "data": "x" * 3_000_000}}
    marked = {"messages": [{"role": "user", "content": [image]}], "cache_control": {}}
    tokens, cached = estimate_input_tokens(marked)
    assert 1_600 <= tokens < 1_650 and cached
