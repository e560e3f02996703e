"""What LLM calls cost: list prices per model family, for the cost estimate in metadata."""

from __future__ import annotations

from skill_pipeline.models import TokenUsage

# USD per million tokens (input, output), matched by model-id prefix.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
}


def estimate_cost_usd(model: str, usage: TokenUsage) -> float:
    """List-price cost of ``usage`` on ``model``; 0.0 for a model without a known price (e.g. offline)."""
    for prefix, (inp, out) in PRICES_PER_MTOK.items():
        if model.startswith(prefix):
            return round((usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000, 6)
    return 0.0
