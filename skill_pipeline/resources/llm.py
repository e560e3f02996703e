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
from typing import Mapping

from dagster import ConfigurableResource
from pydantic import Field

from skill_pipeline.core.challenge_prompt import ChallengeRequest, DifficultyJudgeRequest
from skill_pipeline.core.generation import SyntheticScenario
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
    ) -> dict[str, SkillGeneration]:
        """Scenarios for every difficulty of every skill (``core.scenario_writing.generate_scenarios``);
        ``on_difficulty_done(skill_id, difficulty, scenarios)`` gets each difficulty's new scenarios
        as soon as they are valid (the caller stores them in its pool); ``live`` holds per skill the
        texts of live items (besides ``keep``) that new scenarios must not near-duplicate."""
        return generate_scenarios(
            self.write_scenarios,
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
