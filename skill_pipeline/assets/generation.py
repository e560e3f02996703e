"""``synthetic_scenarios``: the pool of LLM-written scenarios a skill's dataset draws from."""


from collections import Counter

import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.metadata import table
from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    SyntheticScenario,
    assign_slots,
    item_to_scenario,
)
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, Skill, TokenUsage, dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.core.cost import usage_metadata
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.skill_store import SkillStore


class SyntheticScenariosConfig(dg.Config):
    force_regenerate: bool = Field(
        default=False,
        description="Write all 50 scenarios anew (paid LLM calls) even when the store holds an up-to-date pool.",
    )


class OfflineToRemoteError(dg.Failure):
    pass


def adoptable_pool(skill: Skill, dataset_store: DatasetStore) -> tuple[list[SyntheticScenario], str]:
    """The synthetic scenarios the skill's stored dataset already holds, and why they are (not) usable.

    A pool written for another name or description of the skill (its fingerprint differs) is stale.
    Scenarios displaced by promoted real-world items are no longer stored; the caller asks the LLM
    for those slots only, so the pool stays whole (a real-world item that later loses its
    eligibility needs a synthetic scenario to give its slot back to).
    """
    stored = dataset_store.read_items(dataset_name(skill.id))
    rows = [row for row in (item_to_scenario(item) for item in stored) if row is not None]
    if not rows:
        return [], "no stored synthetic items"
    stale = [r for r in rows if r.skill_fingerprint and r.skill_fingerprint != skill.fingerprint]
    if stale:
        return [], f"{len(stale)} stored items were written for a previous name or description"
    return assign_slots(rows), f"adopted {len(rows)} stored synthetic items"


def scenarios_frame(rows: list[SyntheticScenario]) -> pd.DataFrame:
    columns = list(SyntheticScenario.model_fields)
    return pd.DataFrame([r.model_dump() for r in rows], columns=columns)


def frame_to_scenarios(frame: pd.DataFrame) -> list[SyntheticScenario]:
    return [SyntheticScenario.model_validate(record) for record in frame.to_dict("records")]


@dg.asset(
    partitions_def=skills_partitions,
    group_name="generation",
    owners=["team:learning-data"],
    kinds={"anthropic", "pandas"},
    pool="anthropic",
    code_version=SCENARIO_PROMPT_VERSION,
    description=(
        "5 scenarios × difficulty 1–10 for one skill, written by the LLM (or adopted from the skill's "
        "existing dataset instead of paying for new ones). Each row has a stable item key, the "
        "generator, model and prompt version. Regenerated when the skill's name or description changes."
    ),
)
def synthetic_scenarios(
    context: dg.AssetExecutionContext,
    config: SyntheticScenariosConfig,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
    llm: ScenarioLLM,
) -> dg.Output[pd.DataFrame]:
    skill = skill_store.get_skill(context.partition_key)
    if config.force_regenerate:
        pool, why = [], "regeneration forced by config"
    else:
        pool, why = adoptable_pool(skill, dataset_store)
    missing = sum(
        max(0, SCENARIOS_PER_DIFFICULTY - sum(1 for r in pool if r.difficulty == d)) for d in DIFFICULTY_LEVELS
    )
    complete = missing == 0
    usage, calls, model = TokenUsage(), 0, None
    pool_before = len(pool)
    if not complete:
        if llm.generator == "offline" and dataset_store.is_remote:
            raise OfflineToRemoteError(
                description=(
                    f"skill {skill.id}: scenarios would be written by the offline writer into "
                    f"{dataset_store.backend}; set ANTHROPIC_API_KEY, or unset the Opik variables to "
                    "use the local dataset store"
                )
            )
        context.log.info(f"skill {skill.id}: {why}; asking {llm.service} for the {missing} missing scenarios")
        result = llm.generate([skill], keep={skill.id: pool})[skill.id]
        pool, usage, calls, model = result.rows, result.usage, result.calls, result.model
    else:
        context.log.info(f"skill {skill.id}: {why}; no LLM call")

    by_difficulty = Counter(r.difficulty for r in pool)
    generators = Counter(r.generator for r in pool)
    frame = scenarios_frame(pool)
    return dg.Output(
        frame,
        metadata={
            "skill_name": skill.name,
            "dagster/row_count": len(frame),
            "dataset_name": dataset_name(skill.id),
            "scenarios": len(frame),
            "source": "adopted" if complete else ("completed" if pool_before else "generated"),
            "scenarios_generated": missing,
            "adoption": why,
            "generators": ", ".join(f"{g}: {n}" for g, n in sorted(generators.items())),
            "model": model or ", ".join(sorted({r.model for r in pool})),
            "prompt_version": SCENARIO_PROMPT_VERSION,
            "llm_calls": calls,
            **usage_metadata(llm.generator, model or "", usage),
            "per_difficulty": table(
                pd.DataFrame({"difficulty": list(DIFFICULTY_LEVELS), "scenarios": [by_difficulty.get(d, 0) for d in DIFFICULTY_LEVELS]})
            ),
            "preview": table(frame[["item_key", "difficulty", "scenario"]], max_rows=10),
        },
    )
