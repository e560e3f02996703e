"""The spend guard: a budget checked before every paid call; a run that reaches it stops and keeps what it paid.

Pure tests of ``core.budget`` on a ``MemoryLedger``, then the real path: the Anthropic resource
against the Messages fake, the pool in the Opik fake, the ledger in SQLite.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from skill_pipeline.core.budget import (
    BudgetExceeded,
    MemoryLedger,
    SpendGuard,
    SpendLimits,
    budget_status,
    spend_day,
)
from skill_pipeline.core.scenario_pool import pool_dataset_name
from skill_pipeline.models import TokenUsage
from skill_pipeline.resources.spend_ledger import SqliteSpendLedger
from skill_pipeline_tests.dagster_helpers import tick
from skill_pipeline_tests.test_opik_experiment import experiment_run, pipeline  # noqa: F401 - fixture by name
from skill_pipeline_tests.test_production_backends import (  # noqa: F401 - the fixture is used by name
    PROJECT,
    SQL,
    Backends,
    backends,
    config,
    step_error,
    tuned,
)

HAIKU = "claude-haiku-4-5-20251001"
NOON = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


def guard(limits: SpendLimits, ledger, run_id: str = "run-1", model: str = HAIKU, at: datetime = NOON) -> SpendGuard:
    return SpendGuard(limits, ledger, run_id=run_id, skill_id="skill-1", model=model, clock=lambda: at)


def spend(g: SpendGuard, input_tokens: int, output_tokens: int, ceiling: int = 1000) -> None:
    with g.call(input_tokens, ceiling, "scenarios") as handle:
        handle.settle(TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens))


def test_a_call_is_admitted_only_when_its_worst_case_fits_and_the_error_names_the_budget():
    ledger = MemoryLedger()
    g = guard(SpendLimits(run_tokens=3000), ledger)
    spend(g, 500, 300)  # worst case 1500 fits 3000; 800 spent
    spend(g, 500, 300)  # 800 + 1500 fits; 1600 spent
    with pytest.raises(BudgetExceeded) as refused:
        spend(g, 500, 300)  # 1600 + 1500 > 3000: refused before calling
    message = str(refused.value)
    assert "per-run tokens (SKILL_PIPELINE_BUDGET_RUN_TOKENS) = 3,000 tokens" in message
    assert "spent 1,600 tokens" in message and "up to 1,500 tokens" in message
    assert len(ledger.entries) == 2  # the refused call was never made, nor recorded
    # Another run has its own per-run budget.
    spend(guard(SpendLimits(run_tokens=3000), ledger, run_id="run-2"), 500, 300)


def test_calls_in_flight_hold_their_worst_case_until_settled():
    g = guard(SpendLimits(run_tokens=2000), MemoryLedger())
    with g.call(200, 1000, "scenarios") as first:
        with pytest.raises(BudgetExceeded, match="in flight 1,200 tokens"):
            with g.call(200, 1000, "scenarios"):
                pass
        first.settle(TokenUsage(input_tokens=200, output_tokens=100))
    spend(g, 200, 100)  # 300 spent + 1200 fits


def test_the_day_budget_counts_every_run_of_the_day_and_starts_again_the_next_day():
    ledger = MemoryLedger()
    limits = SpendLimits(day_usd=0.01)  # haiku: $1 / $5 per million input / output tokens
    spend(guard(limits, ledger, run_id="a"), 1000, 1000, ceiling=1000)  # $0.006
    with pytest.raises(BudgetExceeded, match=r"per-day USD \(SKILL_PIPELINE_BUDGET_DAY_USD\) = \$0.0100"):
        spend(guard(limits, ledger, run_id="b"), 1000, 1000, ceiling=1000)
    spend(guard(limits, ledger, run_id="c", at=NOON + timedelta(days=1)), 1000, 1000, ceiling=1000)
    assert ledger.day_spend(spend_day(NOON)).usd == pytest.approx(0.006)
    status = budget_status(limits, ledger.day_spend(spend_day(NOON)))
    assert status["budget_day_usd"] == 0.01 and status["budget_day_usd_left"] == pytest.approx(0.004)
    assert status["budget_run_tokens"] == "none"


def test_an_unknown_model_costs_none_counts_in_token_budgets_and_cannot_pass_a_usd_budget(caplog):
    ledger = MemoryLedger()
    spend(guard(SpendLimits(day_tokens=10_000), ledger, model="claude-future-9"), 100, 100)
    assert ledger.entries[0].cost_usd is None and "no list price" in caplog.text
    assert ledger.day_spend(spend_day(NOON)).unpriced_calls == 1
    with pytest.raises(BudgetExceeded, match="cannot be checked: model 'claude-future-9' has no list price"):
        spend(guard(SpendLimits(run_usd=1.0), ledger, model="claude-future-9"), 100, 100)


def test_the_sqlite_ledger_sums_by_run_day_and_skill(tmp_path):
    ledger = SqliteSpendLedger(tmp_path / "spend.sqlite")
    spend(guard(SpendLimits(), ledger, run_id="a"), 100, 50)
    spend(guard(SpendLimits(), ledger, run_id="b"), 10, 5)
    assert ledger.run_spend("a").tokens == 150 and ledger.day_spend(spend_day(NOON)).calls == 2
    assert ledger.day_spend_by_skill(spend_day(NOON))["skill-1"].tokens == 165
    assert ledger.day_spend("2000-01-01").calls == 0


# ------------------------------------------------------------------ the real path, through the fakes
def _budgeted(setup: Backends, **budget) -> dict:
    # One call at a time, so where the budget binds is the same on every run of the test.
    return {**setup.resources, "llm": tuned(setup.resources["llm"], max_concurrency=1, **budget)}


def _run(setup: Backends, resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [a for a in _assets()], instance=setup.instance, partition_key=SQL, resources=resources,
        selection=dg.AssetSelection.assets("synthetic_scenarios"), run_config=config(), raise_on_error=False,
    )


def _assets():
    from skill_pipeline_tests.dagster_helpers import ALL_ASSETS

    return ALL_ASSETS


def _pooled(setup: Backends) -> set[int]:
    return {row["data"]["input"]["difficulty"] for row in setup.opik.items(pool_dataset_name(SQL), PROJECT)}


def test_a_run_budget_that_binds_mid_generation_stops_the_run_and_a_raised_budget_pays_only_the_rest(backends):
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    stopped = _run(setup, _budgeted(setup, budget_run_tokens=8000))
    assert not stopped.success
    error = step_error(stopped)
    assert "per-run tokens (SKILL_PIPELINE_BUDGET_RUN_TOKENS) = 8,000 tokens" in error
    paid = setup.anthropic.calls
    pooled = _pooled(setup)
    assert 0 < paid < 10 and len(pooled) == paid  # every difficulty paid for is in the pool
    assert f"pooled by this run: {', '.join(str(d) for d in sorted(pooled))} ({5 * len(pooled)} scenarios)" in error
    assert sum(r.usage["input_tokens"] + r.usage["output_tokens"] for r in setup.anthropic.requests) <= 8000

    resumed = _run(setup, _budgeted(setup, budget_run_tokens=100_000))
    assert resumed.success
    new = setup.anthropic.requests[paid:]
    assert sorted(r.ask.difficulty for r in new) == sorted(set(range(1, 11)) - pooled)
    assert _pooled(setup) == set(range(1, 11))


def test_a_day_budget_holds_across_runs_and_the_next_day_pays_only_for_what_is_missing(backends, monkeypatch):
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    resources = _budgeted(setup, budget_day_tokens=8000)
    assert not _run(setup, resources).success
    paid, pooled = setup.anthropic.calls, _pooled(setup)
    assert 0 < paid < 10

    again = _run(setup, resources)  # the same day: refused before any call
    assert not again.success and "per-day tokens (SKILL_PIPELINE_BUDGET_DAY_TOKENS)" in step_error(again)
    assert setup.anthropic.calls == paid

    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    monkeypatch.setattr("skill_pipeline.core.budget.utcnow", lambda: tomorrow)
    _run(setup, resources)
    new = setup.anthropic.requests[paid:]
    assert new and not {r.ask.difficulty for r in new} & pooled
    assert _pooled(setup) == pooled | {r.ask.difficulty for r in new}


def test_an_experiment_stops_on_the_budget_naming_it(pipeline, anthropic_fake):
    instance, resources = pipeline
    before = anthropic_fake.calls
    result = experiment_run(instance, {**resources, "llm": tuned(resources["llm"], budget_run_tokens=30_000)})
    assert not result.success
    assert "per-run tokens (SKILL_PIPELINE_BUDGET_RUN_TOKENS) = 30,000 tokens" in step_error(result)
    paid = anthropic_fake.requests[before:]
    assert 0 < len(paid) < 100  # 50 items × (challenge + judge) would be 100 calls
    assert sum(r.usage["input_tokens"] + r.usage["output_tokens"] for r in paid) <= 30_000


def test_a_retried_run_shares_the_per_run_budget_of_the_run_it_retries(tmp_path):
    from types import SimpleNamespace

    from skill_pipeline.resources.llm_anthropic import AnthropicLLM

    llm = AnthropicLLM(api_key="k", budget_run_tokens=10, spend_ledger_path=str(tmp_path / "spend.sqlite"))
    assert llm.spend_guard(SimpleNamespace(run_id="retry-1", root_run_id="run-0"), "s").run_id == "run-0"
    assert llm.spend_guard(SimpleNamespace(run_id="run-0", root_run_id=None), "s").run_id == "run-0"


def test_a_difficulty_stopped_by_the_budget_after_a_short_reply_keeps_the_scenarios_it_got():
    """The first call for difficulty 5 answers 3 of 5; the budget refuses the call for the other 2:
    the 3 paid for are handed over to be pooled, and the error is the budget's."""
    from datetime import datetime, timezone

    from skill_pipeline.core.scenario_writing import generate_scenarios
    from skill_pipeline.models import Skill
    from skill_pipeline.resources.llm_offline import OfflineLLM

    skill = Skill(id="skill-9", name="Tax law", description="VAT", created_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    offline, done = OfflineLLM(), {}

    def write(request):
        if request.difficulty == 5 and request.attempt == 1:
            return offline.write_scenarios(request.model_copy(update={"count": 3}))
        if request.difficulty == 5:
            raise BudgetExceeded("per-run tokens (SKILL_PIPELINE_BUDGET_RUN_TOKENS)", 100, 90, 0, 20, "tokens")
        return offline.write_scenarios(request)

    with pytest.raises(BudgetExceeded, match="per-run tokens"):
        generate_scenarios(write, [skill], generator="offline", model="m", service="offline", max_concurrency=1,
                           max_attempts=3, on_difficulty_done=lambda _, d, rows: done.setdefault(d, []).extend(rows))
    assert len(done[5]) == 3 and {r.slot for r in done[5]} == {1, 2, 3}
    assert all(len(rows) == 5 for d, rows in done.items() if d != 5)
