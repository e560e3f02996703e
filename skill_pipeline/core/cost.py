"""What LLM calls cost: list prices per model family, and how a cost is shown when there is none.

Three cases are kept apart, because a 0 reads as "free" or "missing data":
- a priced model: the list-price cost in USD (0.0 only when no token was spent);
- an unknown model (a new id, a typo): ``None`` with a warning; never silently 0.0;
- the offline writer: nothing is paid, so cost and tokens are *not applicable* (``NOT_APPLICABLE``).
"""

from __future__ import annotations

import logging
from typing import Any

from skill_pipeline.models import TokenUsage

log = logging.getLogger(__name__)

# USD per million tokens (input, output), matched by model-id prefix.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
}

NOT_APPLICABLE = "n/a (offline writer)"
UNPAID_GENERATORS = frozenset({"offline"})


def price_per_mtok(model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of ``model``, or None when it has no known price."""
    for prefix, price in PRICES_PER_MTOK.items():
        if model.startswith(prefix):
            return price
    return None


def estimate_cost_usd(model: str, usage: TokenUsage, *, warn: bool = True) -> float | None:
    """List-price cost of ``usage`` on ``model``; None (with a warning) for a model without a known price."""
    if not (usage.input_tokens or usage.output_tokens):
        return 0.0  # nothing spent, whatever the model
    price = price_per_mtok(model)
    if price is None:
        if warn:
            log.warning("no list price for model %r: its cost is unknown (None), not 0", model)
        return None
    inp, out = price
    return round((usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000, 6)


def usage_metadata(generator: str, model: str, usage: TokenUsage) -> dict[str, Any]:
    """Tokens and cost as asset metadata: numbers for paid backends, ``NOT_APPLICABLE`` offline.

    An unknown model's cost is ``None`` (Dagster shows it as null) and ``cost_note`` says why.
    """
    if generator in UNPAID_GENERATORS:
        return {"input_tokens": NOT_APPLICABLE, "output_tokens": NOT_APPLICABLE, "estimated_cost_usd": NOT_APPLICABLE}
    cost = estimate_cost_usd(model, usage)
    metadata: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "estimated_cost_usd": cost,
    }
    if cost is None:
        metadata["cost_note"] = f"no list price for model {model!r} in core/cost.py: cost unknown, not 0"
    return metadata
