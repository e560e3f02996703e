"""ScenarioLLM: the model that writes scenarios (and, for experiments, challenges and judgements).

One interface, one module per backend: ``llm_anthropic.AnthropicLLM`` calls Claude through the
``anthropic`` SDK; ``llm_offline.OfflineLLM``, the embedded default, is a deterministic writer
labelled ``generator: offline`` that needs no network. A backend makes one call per method and
translates its errors; the policy around the calls (concurrency, asking again for what is
missing, slots) is ``core.scenario_writing``, the same for every backend, and ``generate`` only
hands it this resource's ``write_scenarios``.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Mapping, Optional

from dagster import ConfigurableResource
from pydantic import Field

from skill_pipeline.core.budget import SpendGuard, SpendLimits, estimate_input_tokens
from skill_pipeline.core.challenge_prompt import ChallengeRequest, DifficultyJudgeRequest, render_judge_prompt
from skill_pipeline.core.cost import UNPAID_GENERATORS
from skill_pipeline.core.generation import SyntheticScenario, build_scenario_prompt
from skill_pipeline.core.scenario_writing import DifficultyDone, SkillGeneration, generate_scenarios
from skill_pipeline.models import LLMReply, ScenarioRequest, Skill


class ScenarioLLM(ConfigurableResource, abc.ABC):
    """Interface: ``write_scenarios`` is one call; ``generate`` is the core policy around the calls."""

    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="LLM calls in flight at once in this process (size it from the output-token rate limit)",
    )
    max_attempts: int = Field(default=3, ge=1, le=20, description="calls per difficulty before the run fails")
    # The spend budget (core.budget), checked before every paid call; unset: no limit of that kind.
    budget_run_usd: Optional[float] = Field(
        default=None, ge=0,
        description="USD one run may spend on LLM calls (SKILL_PIPELINE_BUDGET_RUN_USD); unset: no per-run USD limit",
    )
    budget_run_tokens: Optional[int] = Field(
        default=None, ge=0,
        description="Input + output tokens one run may spend (SKILL_PIPELINE_BUDGET_RUN_TOKENS); unset: no limit",
    )
    budget_day_usd: Optional[float] = Field(
        default=None, ge=0,
        description="USD all runs of one UTC day may spend, summed from the spend ledger "
        "(SKILL_PIPELINE_BUDGET_DAY_USD); unset: no per-day USD limit",
    )
    budget_day_tokens: Optional[int] = Field(
        default=None, ge=0,
        description="Tokens all runs of one UTC day may spend (SKILL_PIPELINE_BUDGET_DAY_TOKENS); unset: no limit",
    )
    spend_ledger_path: Optional[str] = Field(
        default=None,
        description="SQLite file with one row per paid call (SKILL_PIPELINE_SPEND_LEDGER); unset: "
        "$SKILL_PIPELINE_HOME/spend.sqlite. Runs on several machines must share it.",
    )

    @property
    @abc.abstractmethod
    def generator(self) -> str:
        """Provenance label written on every row (``anthropic`` | ``offline``)."""

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model recorded on rows until a reply names its own."""

    @property
    def service(self) -> str:
        """How error messages and logs name this backend."""
        return self.generator

    @property
    def output_ceiling(self) -> int:
        """The most output tokens one call may produce: the worst case the budget reserves."""
        return 2000

    @property
    def paid(self) -> bool:
        return self.generator not in UNPAID_GENERATORS

    def spend_limits(self) -> SpendLimits:
        return SpendLimits(run_usd=self.budget_run_usd, run_tokens=self.budget_run_tokens,
                           day_usd=self.budget_day_usd, day_tokens=self.budget_day_tokens)

    def spend_ledger(self) -> Any:
        from skill_pipeline.resources import local_home
        from skill_pipeline.resources.spend_ledger import SqliteSpendLedger

        return SqliteSpendLedger(self.spend_ledger_path or local_home() / "spend.sqlite")

    def spend_guard(self, run: Any, skill_id: str) -> SpendGuard | None:
        """The guard of one run's calls for one skill; None for a writer that is not paid (offline).

        ``run`` is the Dagster run (``context.run``): its retries and re-executions share the per-run
        budget of the run they retry (its root run), so a retried run does not get a fresh one."""
        if not self.paid:
            return None
        run_id = getattr(run, "root_run_id", None) or getattr(run, "run_id", None) or str(run)
        return SpendGuard(self.spend_limits(), self.spend_ledger(), run_id=run_id, skill_id=skill_id,
                          model=self.model_name)

    def budgeted(self, guard: SpendGuard | None) -> "BudgetedCalls":
        """This resource's three calls, each checked against ``guard`` first and settled in its ledger."""
        return BudgetedCalls(self, guard)

    @abc.abstractmethod
    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        """One call: ``request.count`` scenarios for one skill at one difficulty, as the raw reply."""

    @abc.abstractmethod
    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        """One challenge for one dataset item, from a rendered challenge-generation prompt (experiments)."""

    @abc.abstractmethod
    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        """The LLM judge's 1–10 difficulty estimate of a generated challenge (experiments)."""

    def generate(
        self,
        skills: list[Skill],
        keep: Mapping[str, list[SyntheticScenario]] | None = None,
        on_difficulty_done: DifficultyDone | None = None,
        live: Mapping[str, list[str]] | None = None,
        guard: SpendGuard | None = None,
    ) -> dict[str, SkillGeneration]:
        """Scenarios for every difficulty of every skill (``core.scenario_writing.generate_scenarios``);
        ``on_difficulty_done(skill_id, difficulty, scenarios)`` gets each difficulty's new scenarios
        as soon as they are valid (the caller stores them in its pool); ``live`` holds per skill the
        texts of live items (besides ``keep``) that new scenarios must not near-duplicate; with
        ``guard`` every call is checked against the spend budget first (``core.budget.BudgetExceeded``
        stops the run)."""
        return generate_scenarios(
            self.budgeted(guard).write_scenarios,
            skills,
            keep,
            generator=self.generator,
            model=self.model_name,
            service=self.service,
            max_concurrency=self.max_concurrency,
            max_attempts=self.max_attempts,
            on_difficulty_done=on_difficulty_done,
            live=live,
        )


class BudgetedCalls:
    """The calls of a ``ScenarioLLM`` under a ``SpendGuard``: admitted, made, then settled in the ledger."""

    def __init__(self, llm: ScenarioLLM, guard: SpendGuard | None) -> None:
        self.llm, self.guard = llm, guard

    def _call(self, purpose: str, prompt: str, call: Callable[[Any], LLMReply], request: Any) -> LLMReply:
        if self.guard is None:
            return call(request)
        skill = getattr(request, "skill", None)  # scenario calls name their skill (one guard may cover a batch)
        with self.guard.call(estimate_input_tokens(prompt), self.llm.output_ceiling, purpose,
                             skill_id=getattr(skill, "id", None)) as handle:
            reply = call(request)
            handle.settle(reply.usage, reply.model)
        return reply

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        return self._call("scenarios", build_scenario_prompt(request), self.llm.write_scenarios, request)

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        return self._call("challenge", request.prompt, self.llm.write_challenge, request)

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        return self._call("judge", render_judge_prompt(request), self.llm.judge_difficulty, request)
