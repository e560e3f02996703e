"""The spend guard: a budget in tokens and USD, per run and per day, checked before every LLM call.

Pure (no Dagster, no SDK, no I/O of its own): what was spent comes from a ``SpendLedger`` (the
adapter's SQLite file, or ``MemoryLedger`` in tests), and every settled call is written to it at
once, so a run that fails half-way still counts, and the day's total is what every run of the
day paid. The guard admits a call only when the call's *worst case* (its estimated input tokens
plus the output ceiling ``max_tokens``, at the model's list price) still fits under every budget
on top of what was spent and what other calls in flight have reserved: the budget is never
overrun, at the price of stopping a little early. A refused call raises ``BudgetExceeded``,
naming the budget and its figures; nothing is sent.

An unknown model's cost is ``None`` (``core.cost``): its calls count in token budgets, and a USD
budget that cannot be checked refuses the call rather than spend blindly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Protocol

from pydantic import BaseModel, Field

from skill_pipeline.core.cost import estimate_cost_usd, price_per_mtok
from skill_pipeline.models import TokenUsage

# Environment variables of the deployment's budget (read by ``definitions.build_resources``).
BUDGET_VARIABLES: dict[str, str] = {
    "budget_run_usd": "SKILL_PIPELINE_BUDGET_RUN_USD",
    "budget_run_tokens": "SKILL_PIPELINE_BUDGET_RUN_TOKENS",
    "budget_day_usd": "SKILL_PIPELINE_BUDGET_DAY_USD",
    "budget_day_tokens": "SKILL_PIPELINE_BUDGET_DAY_TOKENS",
}
TOOL_OVERHEAD_TOKENS = 600  # the tool definition sent with every call, over-estimated


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def spend_day(moment: datetime) -> str:
    """The budget day of ``moment``: its UTC date."""
    return moment.astimezone(timezone.utc).date().isoformat()


def estimate_input_tokens(prompt: str) -> int:
    """About four characters a token, plus the tool definition: an upper estimate for the check."""
    return len(prompt) // 4 + TOOL_OVERHEAD_TOKENS


class SpendLimits(BaseModel):
    """The deployment's budget; ``None`` is no limit of that kind."""

    run_usd: float | None = Field(default=None, ge=0, description="USD one run may spend on LLM calls")
    run_tokens: int | None = Field(default=None, ge=0, description="input + output tokens one run may spend")
    day_usd: float | None = Field(default=None, ge=0, description="USD all runs of one UTC day may spend")
    day_tokens: int | None = Field(default=None, ge=0, description="tokens all runs of one UTC day may spend")

    def as_metadata(self) -> dict[str, float | int | str]:
        return {f"budget_{k}": ("none" if v is None else v) for k, v in self.model_dump().items()}


class Spend(BaseModel):
    """Tokens and USD spent; ``unpriced_calls`` counts calls whose model has no list price (USD unknown)."""

    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    unpriced_calls: int = 0


class LedgerEntry(BaseModel):
    """One settled, paid call."""

    at: datetime
    run_id: str
    skill_id: str
    purpose: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None

    @property
    def day(self) -> str:
        return spend_day(self.at)


class SpendLedger(Protocol):
    def record(self, entry: LedgerEntry) -> None: ...

    def run_spend(self, run_id: str) -> Spend: ...

    def day_spend(self, day: str) -> Spend: ...


def add(spend: Spend, entry: LedgerEntry) -> Spend:
    return Spend(
        calls=spend.calls + 1,
        tokens=spend.tokens + entry.input_tokens + entry.output_tokens,
        usd=round(spend.usd + (entry.cost_usd or 0.0), 6),
        unpriced_calls=spend.unpriced_calls + (entry.cost_usd is None),
    )


class MemoryLedger:
    """A ledger in memory (tests, and a single process that needs no history)."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: LedgerEntry) -> None:
        with self._lock:
            self.entries.append(entry)

    def _sum(self, keep) -> Spend:
        spend = Spend()
        with self._lock:
            for entry in self.entries:
                if keep(entry):
                    spend = add(spend, entry)
        return spend

    def run_spend(self, run_id: str) -> Spend:
        return self._sum(lambda e: e.run_id == run_id)

    def day_spend(self, day: str) -> Spend:
        return self._sum(lambda e: e.day == day)


class BudgetExceeded(RuntimeError):
    """A call refused because its worst case would take a budget over its limit (nothing was sent)."""

    def __init__(self, budget: str, limit: float, spent: float, reserved: float, needed: float, unit: str, why: str = ""):
        self.budget, self.limit, self.spent, self.reserved, self.needed, self.unit = budget, limit, spent, reserved, needed, unit

        def fmt(value: float) -> str:
            return f"${value:.4f}" if unit == "USD" else f"{int(value):,} tokens"

        message = why or (
            f"spend budget {budget} = {fmt(limit)} reached: spent {fmt(spent)}, in flight {fmt(reserved)}, "
            f"the next call may cost up to {fmt(needed)}; stopped before calling"
        )
        super().__init__(message)

    def as_metadata(self) -> dict[str, float | str]:
        return {"budget": self.budget, "budget_limit": self.limit, "budget_spent": self.spent,
                "budget_unit": self.unit, "next_call_up_to": self.needed}


BUDGET_NAMES = {
    "run_usd": f"per-run USD ({BUDGET_VARIABLES['budget_run_usd']})",
    "run_tokens": f"per-run tokens ({BUDGET_VARIABLES['budget_run_tokens']})",
    "day_usd": f"per-day USD ({BUDGET_VARIABLES['budget_day_usd']})",
    "day_tokens": f"per-day tokens ({BUDGET_VARIABLES['budget_day_tokens']})",
}


class Reservation(BaseModel):
    tokens: int
    usd: float


class SpendGuard:
    """The budget of one run's calls: ``call(...)`` admits, then settles (or releases) one call."""

    def __init__(self, limits: SpendLimits, ledger: SpendLedger, *, run_id: str, skill_id: str, model: str,
                 clock=None) -> None:
        self.limits, self.ledger = limits, ledger
        self.run_id, self.skill_id, self.model = run_id, skill_id, model
        self.clock = clock or utcnow
        self._lock = threading.Lock()
        self._in_flight: list[Reservation] = []

    def worst_case(self, input_tokens: int, output_ceiling: int) -> Reservation:
        usd = estimate_cost_usd(self.model, TokenUsage(input_tokens=input_tokens, output_tokens=output_ceiling), warn=False)
        return Reservation(tokens=input_tokens + output_ceiling, usd=usd or 0.0)

    def _check(self, need: Reservation, run: Spend, day: Spend) -> None:
        reserved = Reservation(tokens=sum(r.tokens for r in self._in_flight), usd=sum(r.usd for r in self._in_flight))
        for key, spent, unit in (("run_usd", run, "USD"), ("run_tokens", run, "tokens"),
                                 ("day_usd", day, "USD"), ("day_tokens", day, "tokens")):
            limit = getattr(self.limits, key)
            if limit is None:
                continue
            if unit == "USD" and price_per_mtok(self.model) is None:
                raise BudgetExceeded(BUDGET_NAMES[key], limit, spent.usd, reserved.usd, 0.0, unit, why=(
                    f"spend budget {BUDGET_NAMES[key]} = ${limit:.4f} cannot be checked: model {self.model!r} has no "
                    "list price in core/cost.py (its cost is unknown); add its price or use a token budget"))
            used = spent.usd if unit == "USD" else spent.tokens
            held = reserved.usd if unit == "USD" else reserved.tokens
            needed = need.usd if unit == "USD" else need.tokens
            if used + held + needed > limit + 1e-12:
                raise BudgetExceeded(BUDGET_NAMES[key], limit, used, held, needed, unit)

    @contextmanager
    def call(self, input_tokens: int, output_ceiling: int, purpose: str,
             skill_id: str | None = None) -> Iterator["CallHandle"]:
        """Admit one call (or raise ``BudgetExceeded``); the body calls ``handle.settle(usage, model)``.

        A call that raises before settling is released: a failed request is not billed. ``skill_id``:
        the skill the call is for when one guard covers several (the new-skills batch run), so the
        ledger attributes each call to its skill; else the guard's."""
        need = self.worst_case(input_tokens, output_ceiling)
        with self._lock:
            run = self.ledger.run_spend(self.run_id)
            day = self.ledger.day_spend(spend_day(self.clock()))
            self._check(need, run, day)
            self._in_flight.append(need)
        handle = CallHandle(self, purpose, skill_id or self.skill_id)
        try:
            yield handle
        finally:
            with self._lock:
                self._in_flight.remove(need)

    def record(self, usage: TokenUsage, model: str, purpose: str, skill_id: str | None = None) -> None:
        self.ledger.record(LedgerEntry(
            at=self.clock(), run_id=self.run_id, skill_id=skill_id or self.skill_id, purpose=purpose, model=model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cost_usd=estimate_cost_usd(model, usage),
        ))


class CallHandle:
    def __init__(self, guard: SpendGuard, purpose: str, skill_id: str | None = None) -> None:
        self.guard, self.purpose, self.skill_id = guard, purpose, skill_id

    def settle(self, usage: TokenUsage, model: str | None = None) -> None:
        self.guard.record(usage, model or self.guard.model, self.purpose, self.skill_id)


def budget_status(limits: SpendLimits, today: Spend) -> dict[str, float | int | str]:
    """Today's spend against the per-day budget, for the overview (``none``: no limit set)."""
    status: dict[str, float | int | str] = {
        "today_usd": today.usd,
        "today_tokens": today.tokens,
        "today_calls": today.calls,
        **limits.as_metadata(),
    }
    if limits.day_usd is not None:
        status["budget_day_usd_left"] = round(max(0.0, limits.day_usd - today.usd), 6)
    if limits.day_tokens is not None:
        status["budget_day_tokens_left"] = max(0, limits.day_tokens - today.tokens)
    return status
