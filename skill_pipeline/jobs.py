"""Jobs over the per-skill assets; each can be launched or backfilled for any set of skills in the UI."""

import os

import dagster as dg

from skill_pipeline.partitions import skills_partitions

# Runs that may call a paid LLM carry this tag: deploy/dagster.yaml limits how many run at once. The
# LLM resource is Anthropic exactly when ANTHROPIC_API_KEY is set (definitions.build_resources); with
# the offline writer nothing is called, so offline runs are not tagged as LLM runs.
LLM_TAGS = {"skill_pipeline/llm": "anthropic"} if os.environ.get("ANTHROPIC_API_KEY") else {}

skill_dataset_job = dg.define_asset_job(
    "skill_dataset_job",
    selection=dg.AssetSelection.assets("synthetic_scenarios", "gold_standard_candidates", "skill_dataset"),
    partitions_def=skills_partitions,
    tags=LLM_TAGS,
    description="Scenarios, candidates and dataset of a skill: what the skill sensor runs for a new or changed skill.",
)

promotion_job = dg.define_asset_job(
    "promotion",
    selection=dg.AssetSelection.assets("gold_standard_candidates", "skill_dataset"),
    partitions_def=skills_partitions,
    description="Re-score real-world challenges and let eligible ones replace synthetic items (at most max_promotions a run).",
)

experiment_job = dg.define_asset_job(
    "experiment",
    selection=dg.AssetSelection.assets("prompt_experiment"),
    partitions_def=skills_partitions,
    tags=LLM_TAGS,
    description="Run the challenge-generation prompt over the skill's dataset and score it (config selects "
    "the baseline version, an optional candidate compared on the same items, and K trials). One run per skill.",
)

prompt_comparison_job = dg.define_asset_job(
    "prompt_comparison",
    selection=dg.AssetSelection.assets("prompt_comparison_all_skills"),
    description="Pool the newest per-skill comparisons of two prompt versions (no LLM call): the verdict over "
    "every skill, with skill-clustered errors.",
)
