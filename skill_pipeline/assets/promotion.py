"""``gold_standard_candidates``: every challenge of a skill, scored over all its answers."""


import dagster as dg
import pandas as pd

from skill_pipeline.assets.metadata import counts_table, table
from skill_pipeline.core.promotion import rejection_table, score_candidates
from skill_pipeline.core.promotion_duplicates import live_items_frame
from skill_pipeline.core.promotion_reasons import REASON_NEAR_DUPLICATE
from skill_pipeline.models import dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.promotion_policy import PromotionPolicy, criteria_override_config
from skill_pipeline.resources.skill_store import SkillStore


class GoldStandardConfig(criteria_override_config(dg.Config)):  # type: ignore[misc]
    """Per-run overrides of the criteria in the launchpad: every field of ``GoldStandardCriteria``
    (declared once in ``models.py``, with its description and bounds), unset by default, so a run
    without overrides (the schedule's, a backfill's) uses the deployment's ``promotion_policy``."""

    def overrides(self) -> dict:
        return self.model_dump()


@dg.asset(
    partitions_def=skills_partitions,
    group_name="promotion",
    owners=["team:learning-data"],
    code_version="candidates-v1",
    kinds={"supabase", "opik", "pandas"},
    description=(
        "Every challenge of the skill judged on the evidence of its answers: malformed rows and answers "
        "rejected with their reasons (pandera), rapid guesses and idle answers excluded (times in ms), "
        "then per challenge: valid answers, correct rate with its Wilson interval, response-time score "
        "of the correct answers, discrimination (rest-score correlation, needs user keys), difficulty "
        "calibrated from the answers (Rasch per skill; a label off by more than 1 level moves the item "
        "to its calibrated slot), the LLM judge's composite score from the dataset store, and whether "
        "its question and options reword a live item of the dataset (rapidfuzz token-set ratio). "
        "`eligible` says whether it meets the gold-standard criteria, `reason` lists every rule it fails."
    ),
)
def gold_standard_candidates(
    context: dg.AssetExecutionContext,
    config: GoldStandardConfig,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
    promotion_policy: PromotionPolicy,
) -> dg.Output[pd.DataFrame]:
    skill_id = context.partition_key
    try:
        criteria, overridden = promotion_policy.resolve(config.overrides())
    except ValueError as exc:
        raise dg.Failure(f"skill {skill_id}: {exc}") from None
    frame, metadata = score_skill(skill_id, skill_store, dataset_store, criteria, overridden, context.log)
    return dg.Output(frame, metadata=metadata)


def score_skill(skill_id: str, skill_store: SkillStore, dataset_store: DatasetStore, criteria, overridden: dict, log) -> tuple[pd.DataFrame, dict]:
    """One skill's candidates and the asset's metadata (also used per skill by the new-skills batch run)."""
    skill = skill_store.get_skill(skill_id)
    data = skill_store.load_challenges(skill_id)
    try:
        judge = dataset_store.judge_scores(data.challenges["id"].astype(str).tolist())
    except Exception as exc:  # the store names itself and the challenge; the run must name the skill
        raise dg.Failure(f"skill {skill_id}: reading judge scores from {dataset_store.backend} failed: {exc}") from None
    live = live_items_frame(dataset_store.read_items(dataset_name(skill_id)))
    frame, summary = score_candidates(data.challenges, data.answers, judge, criteria, live_items=live)
    log.info(
        f"skill {skill_id}: {summary.eligible} eligible of {summary.challenges_read} challenges; "
        f"{summary.answers_excluded} answers excluded by hygiene, {summary.answers_invalid} malformed"
    )
    if len(judge) == 0 and summary.answers_read > summary.answers_unmatched:
        log.warning(f"skill {skill_id}: no judge score for any challenge (see the judge_scores_present check)")
    return (
        frame,
        {
            "skill_name": skill.name,
            "dagster/row_count": len(frame),
            "read_path": f"{skill_store.backend}: {data.read_path}",
            "challenges_read": summary.challenges_read,
            "answers_read": summary.answers_read,
            "answers_invalid": summary.answers_invalid,
            "answers_excluded": summary.answers_excluded,
            "answers_unmatched": summary.answers_unmatched,
            "judge_scores_found": len(judge),
            "live_items_compared": len(live),
            "near_duplicates_of_live_items": summary.rejected_by_reason.get(REASON_NEAR_DUPLICATE, 0),
            "eligible": summary.eligible,
            "rejected": summary.rejected,
            "rejected_by_reason": counts_table(summary.rejected_by_reason, "reason", "challenges"),
            "rejected_challenges": table(rejection_table(frame)),
            "rejected_challenges_not_shown": max(0, summary.rejected - len(rejection_table(frame))),
            "invalid_answers_by_reason": counts_table(summary.answers_invalid_by_reason, "reason", "answers"),
            "excluded_answers_by_reason": counts_table(summary.answers_excluded_by_reason, "reason", "answers"),
            "calibration": counts_table(summary.calibration_by_status, "status", "challenges"),
            "discrimination": counts_table(summary.discrimination_by_status, "status", "challenges"),
            "criteria": dg.MetadataValue.json(criteria.model_dump()),
            "criteria_overridden_by_run": dg.MetadataValue.json(overridden),
        },
    )
