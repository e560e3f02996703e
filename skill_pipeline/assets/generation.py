"""``synthetic_scenarios``: the pool of LLM-written scenarios a skill's dataset draws from."""


from collections import Counter

import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.metadata import table
from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    SyntheticScenario,
    adopt_items,
)
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, Skill, TokenUsage, dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.core.budget import BudgetExceeded
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

    Used when the skill has no pool yet (a dataset written before the pool existed, or by the old
    backend). Items of the old backend's shape (random UUIDv7 ids, no fingerprint, none of our
    metadata) are adopted as they are: they count as synthetic items of their difficulty, keep
    their ids and content, and stay until promotion displaces them or ``force_regenerate``.
    """
    stored = dataset_store.read_items(dataset_name(skill.id))
    rows = adopt_items(skill, stored)
    if not rows:
        return [], "no stored synthetic items"
    stale = [r for r in rows if r.skill_fingerprint and r.skill_fingerprint != skill.fingerprint]
    if stale:
        return [], f"{len(stale)} stored items were written for a previous name or description"
    kept = sum(1 for r in rows if r.adopted is not None)
    return rows, f"adopted {len(rows)} stored synthetic items" + (f" ({kept} kept as stored)" if kept else "")


def stored_pool(skill: Skill, dataset_store: DatasetStore) -> tuple[list[SyntheticScenario], str]:
    """The skill's durable pool from the store; stale (another name or description) means empty."""
    pool = dataset_store.read_pool(skill.id)
    if not pool:
        return [], "no pool"
    stale = [r for r in pool if r.skill_fingerprint and r.skill_fingerprint != skill.fingerprint]
    if stale:
        return [], f"{len(stale)} pooled scenarios were written for a previous name or description"
    return pool, f"pool of {len(pool)} scenarios in the {dataset_store.backend}"


def current_pool(skill: Skill, dataset_store: DatasetStore) -> tuple[list[SyntheticScenario], str]:
    """The skill's pool, or (before there was one) what its stored dataset holds, pooled now."""
    pool, why = stored_pool(skill, dataset_store)
    if not pool and why == "no pool":
        pool, why = adoptable_pool(skill, dataset_store)
        if pool:
            dataset_store.write_pool(skill, pool)
    return pool, why


def scenarios_frame(rows: list[SyntheticScenario]) -> pd.DataFrame:
    columns = [c for c in SyntheticScenario.model_fields if c != "adopted"] + ["adopted_item_id"]
    records = [
        {**r.model_dump(exclude={"adopted"}), "adopted_item_id": r.adopted.id if r.adopted else None} for r in rows
    ]
    return pd.DataFrame(records, columns=columns)


def frame_to_scenarios(frame: pd.DataFrame) -> list[SyntheticScenario]:
    """Rows of the frame (a view: the pool itself is read from the store); NaN read back as None."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [SyntheticScenario.model_validate(record) for record in records]


def live_real_world_texts(skill: Skill, dataset_store: DatasetStore) -> list[str]:
    """The questions of the real-world items in the skill's stored dataset: live items new scenarios
    must not near-duplicate. Its synthetic items are not listed: they are the pool (already live for
    generation) or, when the pool is being regenerated, exactly what is being replaced."""
    stored = dataset_store.read_items(dataset_name(skill.id))
    return [str(item.input.get("scenario") or "") for item in stored if item.source == "real_world"]


def budget_failure(exc: BudgetExceeded, skill: Skill, pooled: list[tuple[int, int]]) -> dg.Failure:
    """The run stops on the budget: what it paid for is in the pool, a later run writes only the rest."""
    scenarios = sum(n for _, n in pooled)
    kept = (", ".join(str(d) for d, _ in sorted(pooled)) + f" ({scenarios} scenarios)") if pooled else "none"
    return dg.Failure(
        description=(
            f"skill {skill.id} ({skill.name}): {exc}. Difficulties written and pooled by this run: {kept}; "
            "the next run (tomorrow, or with the budget raised) pays only for the missing ones."
        ),
        metadata={**exc.as_metadata(), "skill_name": skill.name, "difficulties_pooled": len(pooled),
                  "scenarios_pooled": scenarios},
        allow_retries=False,
    )


def missing_count(pool: list[SyntheticScenario]) -> int:
    return sum(
        max(0, SCENARIOS_PER_DIFFICULTY - sum(1 for r in pool if r.difficulty == d)) for d in DIFFICULTY_LEVELS
    )


@dg.asset(
    partitions_def=skills_partitions,
    group_name="generation",
    owners=["team:learning-data"],
    kinds={"anthropic", "pandas"},
    pool="anthropic",
    code_version=SCENARIO_PROMPT_VERSION,
    description=(
        "5 scenarios × difficulty 1–10 for one skill: the skill's durable pool in the dataset store, "
        "completed by the LLM (each difficulty pooled as soon as it is valid) or adopted from the "
        "skill's existing dataset instead of paying for new ones. Each row has a stable item key, the "
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
        pool, why = current_pool(skill, dataset_store)
    missing = missing_count(pool)
    complete = missing == 0
    usage, calls, model, near_duplicates = TokenUsage(), 0, None, 0
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

        pooled: list[tuple[int, int]] = []  # what a budget stop keeps, for its error message

        def store_and_count(skill_id: str, difficulty: int, scenarios: list[SyntheticScenario]) -> None:
            dataset_store.write_pool(skill, scenarios)
            pooled.append((difficulty, len(scenarios)))
            context.log.debug(f"skill {skill_id}: difficulty {difficulty}: {len(scenarios)} scenarios pooled")

        live = live_real_world_texts(skill, dataset_store)
        guard = llm.spend_guard(context.run, skill.id)
        try:
            result = llm.generate(
                [skill], keep={skill.id: pool}, on_difficulty_done=store_and_count, live={skill.id: live}, guard=guard
            )[skill.id]
        except BudgetExceeded as exc:
            raise budget_failure(exc, skill, pooled) from None
        pool, usage, calls, model = result.rows, result.usage, result.calls, result.model
        near_duplicates = result.near_duplicates_dropped
        context.log.info(
            f"skill {skill.id}: {near_duplicates} new scenarios dropped as near duplicates of live texts "
            f"(the pool, {len(live)} real-world items, each other) and asked for again"
        )
    else:
        context.log.info(f"skill {skill.id}: {why}; no LLM call")

    frame = scenarios_frame(pool)
    return dg.Output(
        frame,
        metadata=scenarios_metadata(
            skill, pool, frame, why=why, complete=complete, missing=missing, pool_before=pool_before,
            calls=calls, usage=usage, model=model, generator=llm.generator, near_duplicates=near_duplicates,
        ),
    )


def scenarios_metadata(
    skill: Skill, pool: list[SyntheticScenario], frame: pd.DataFrame, *, why: str, complete: bool, missing: int,
    pool_before: int, calls: int, usage: TokenUsage, model: str | None, generator: str, near_duplicates: int = 0,
) -> dict:
    """The asset's metadata for one skill (also reported per skill by the new-skills batch run)."""
    by_difficulty = Counter(r.difficulty for r in pool)
    generators = Counter(r.generator for r in pool)
    return {
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
        "near_duplicates_dropped": near_duplicates,
        **usage_metadata(generator, model or "", usage),
        "per_difficulty": table(
            pd.DataFrame({"difficulty": list(DIFFICULTY_LEVELS), "scenarios": [by_difficulty.get(d, 0) for d in DIFFICULTY_LEVELS]})
        ),
        "preview": table(frame[["item_key", "difficulty", "scenario"]], max_rows=10),
    }
