"""``skill_dataset``: the skill's evaluation dataset ``skill_{skill_id}_scenarios`` in the dataset store."""


import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.generation import adoptable_pool, missing_count, stored_pool, synthetic_scenarios
from skill_pipeline.assets.metadata import capped_table
from skill_pipeline.assets.metadata import table as metadata_table
from skill_pipeline.core.composition import Composition, compose_dataset
from skill_pipeline.core.dataset_evidence import promoted_items, retired_items
from skill_pipeline.core.promotion import candidates_from_frame
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, Skill, SyncReport, dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.promotion_policy import PromotionPolicy
from skill_pipeline.resources.skill_store import SkillStore


class SkillDatasetConfig(dg.Config):
    max_promotions: int | None = Field(
        default=None, ge=0, le=50,
        description="New real-world items this run may promote (0–50): replacement is gradual, a few slots at a "
        "time. Unset: the deployment's value (resource promotion_policy).",
    )


def status_metadata(composition: Composition, report: SyncReport, backend: str) -> dict:
    """The seed's status endpoint as asset metadata, plus what the sync wrote."""
    items = composition.target
    real = sum(1 for item in items if item.source == "real_world")
    table = composition.counts_by_difficulty()
    per_difficulty = pd.DataFrame(
        {
            "difficulty": list(DIFFICULTY_LEVELS),
            "synthetic": [table[d]["synthetic"] for d in DIFFICULTY_LEVELS],
            "real_world": [table[d]["real_world"] for d in DIFFICULTY_LEVELS],
            "slots": [SCENARIOS_PER_DIFFICULTY] * len(DIFFICULTY_LEVELS),
        }
    )
    return {
        "dataset_name": report.dataset_name,
        "dataset_store": backend,
        "dataset_version": report.version or "",
        "item_count": len(items),
        "synthetic_count": len(items) - real,
        "real_world_count": real,
        "real_world_pct": dg.MetadataValue.float(round(100 * real / len(items), 1) if items else 0.0),
        "items_inserted": report.inserted,
        "items_updated": report.updated,
        "items_deleted": report.deleted,
        "items_unchanged": report.unchanged,
        "newly_promoted": len(composition.newly_promoted),
        "retired": len(composition.retired),
        "per_difficulty": metadata_table(per_difficulty),
    }


@dg.asset(
    partitions_def=skills_partitions,
    group_name="datasets",
    owners=["team:learning-data"],
    code_version="dataset-v1",
    kinds={"opik"},
    deps=[synthetic_scenarios],
    description=(
        "The Opik evaluation dataset skill_{skill_id}_scenarios: 5 slots per difficulty 1–10. Eligible "
        "real-world challenges take slots from synthetic scenarios, best first, at most max_promotions "
        "new ones a run. Synced by diff: new items inserted before displaced ones are deleted, "
        "unchanged items not rewritten. The synthetic scenarios come from the skill's durable pool in "
        "the dataset store (written by synthetic_scenarios), not from a run's stored output. Metadata: "
        "tables of the promoted and the retired items with their figures and why each retired one left."
    ),
)
def skill_dataset(
    context: dg.AssetExecutionContext,
    config: SkillDatasetConfig,
    gold_standard_candidates: pd.DataFrame,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
    promotion_policy: PromotionPolicy,
) -> dg.MaterializeResult:
    skill = skill_store.get_skill(context.partition_key)
    max_promotions = promotion_policy.max_promotions if config.max_promotions is None else config.max_promotions
    metadata = sync_skill_dataset(
        skill, gold_standard_candidates, dataset_store, max_promotions, promotion_policy.near_duplicate_threshold,
        context.log,
    )
    return dg.MaterializeResult(
        metadata={
            "skill_name": skill.name,
            "max_promotions": max_promotions,
            "max_promotions_from": "deployment" if config.max_promotions is None else "run config",
            **metadata,
        }
    )


def sync_skill_dataset(
    skill: Skill, gold_standard_candidates: pd.DataFrame, dataset_store: DatasetStore, max_promotions: int,
    near_duplicate_threshold: float, log,
) -> dict:
    """Compose and sync one skill's dataset from its pool; the status metadata (also used per skill by
    the new-skills batch run)."""
    name = dataset_name(skill.id)
    pool, why = stored_pool(skill, dataset_store)
    if why == "no pool":  # a dataset from before the pool (or the old backend): adopt it, as synthetic_scenarios does
        pool, why = adoptable_pool(skill, dataset_store)
        if pool and not missing_count(pool):
            dataset_store.write_pool(skill, pool)
    if missing_count(pool):
        raise dg.Failure(
            description=(
                f"skill {skill.id}: the scenario pool in the {dataset_store.backend} is not complete ({why}, "
                f"{missing_count(pool)} scenarios missing); materialise synthetic_scenarios for this skill first"
            )
        )
    candidates = candidates_from_frame(gold_standard_candidates, eligible_only=True)
    stored = dataset_store.read_items(name)
    composition = compose_dataset(
        skill, pool, candidates, stored, max_promotions=max_promotions,
        near_duplicate_threshold=near_duplicate_threshold,
    )
    generators = sorted({row.generator for row in pool})
    description = f"Challenge scenarios for {skill.name} (skill-pipeline; scenarios by {', '.join(generators)})"
    report = dataset_store.sync(name, description, composition)
    log.info(
        f"{name}: {report.inserted} inserted, {report.updated} updated, {report.deleted} deleted, "
        f"{report.unchanged} unchanged; promoted {composition.newly_promoted or 'none'}"
    )
    return {
        **status_metadata(composition, report, dataset_store.backend),
        **capped_table("promoted_items", promoted_items(composition, gold_standard_candidates)),
        **capped_table("retired_items", retired_items(skill, composition, gold_standard_candidates, stored)),
        "near_duplicates_skipped": dg.MetadataValue.json(composition.near_duplicates_skipped),
    }
