"""Asset checks: the rules every skill's scenarios and dataset keep, checked on what is stored."""


from collections.abc import Iterator

import warnings

import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.dataset import skill_dataset
from skill_pipeline.assets.evaluation import prompt_experiment
from skill_pipeline.assets.generation import frame_to_scenarios, synthetic_scenarios
from skill_pipeline.assets.promotion import gold_standard_candidates
from skill_pipeline.core import audit
from skill_pipeline.core.experiment import regression_verdict
from skill_pipeline.core.promotion import judge_contract_verdict
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, dataset_name, find_placeholder
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.skill_store import SkillStore


# Partitioned asset checks are marked preview in Dagster 1.13; they are what per-skill checks need.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", message=".*partitions_def.*asset_check", category=dg.PreviewWarning)

SYNTHETIC_SCENARIOS_KEY = synthetic_scenarios.key


def _result(check_name: str, verdict: audit.Verdict, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    metadata: dict = {"detail": verdict.detail}
    if verdict.failures:
        metadata["failures"] = dg.MetadataValue.md("\n".join(f"- {f}" for f in verdict.failures))
    return dg.AssetCheckResult(asset_key=asset_key, check_name=check_name, passed=verdict.passed, metadata=metadata)


@dg.asset_check(
    asset=synthetic_scenarios,
    partitions_def=skills_partitions,
    description="5 scenarios per difficulty 1–10, each with a concept, none with placeholder text.",
)
def synthetic_scenarios_are_complete(synthetic_scenarios: pd.DataFrame) -> dg.AssetCheckResult:
    verdict = scenarios_verdict(frame_to_scenarios(synthetic_scenarios))
    return _result("synthetic_scenarios_are_complete", verdict, SYNTHETIC_SCENARIOS_KEY)


def scenarios_verdict(rows) -> audit.Verdict:
    """The rule of ``synthetic_scenarios_are_complete`` (also applied per skill by the new-skills batch run)."""
    failures: list[str] = []
    for d in DIFFICULTY_LEVELS:
        n = sum(1 for r in rows if r.difficulty == d)
        if n != SCENARIOS_PER_DIFFICULTY:
            failures.append(f"difficulty {d}: {n} scenarios")
    for r in rows:
        if not r.expected_concepts:
            failures.append(f"{r.item_key}: no expected concept")
        if marker := find_placeholder(r.scenario):
            failures.append(f"{r.item_key}: placeholder text {marker!r}")
    return audit.Verdict(passed=not failures, detail=f"{len(rows)} scenarios", failures=failures[:20])


DATASET_CHECKS = {
    "size_and_balance": "50 items, exactly 5 per difficulty 1–10.",
    "unique_deterministic_ids": "Every id unique and equal to the id derived from skill id + item key (an item adopted from the "
    "old backend keeps its stored id).",
    "no_placeholder_text": "No 'Generic scenario' or similar fallback text; every synthetic scenario has a concept.",
    "difficulty_range": "difficulty_range is the target ± 1, clamped to 1–10.",
    "only_eligible_real_world": "Every real-world item met the gold-standard criteria in force.",
    "no_personal_data": "No user id (or similar personal key) anywhere in an item.",
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name,
            asset=skill_dataset,
            description=text,
            partitions_def=skills_partitions,
            additional_deps=["gold_standard_candidates"],
        )
        for name, text in DATASET_CHECKS.items()
    ],
    ins={"gold_standard_candidates": dg.AssetIn("gold_standard_candidates")},
)
def skill_dataset_checks(
    context: dg.AssetCheckExecutionContext,
    gold_standard_candidates: pd.DataFrame,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
) -> Iterator[dg.AssetCheckResult]:
    """Reads the dataset back from the store once and audits what is really there."""
    skill = skill_store.get_skill(context.partition_key)
    items = dataset_store.read_items(dataset_name(skill.id))
    for name, verdict in dataset_verdicts(skill, items, gold_standard_candidates).items():
        yield _result(name, verdict, skill_dataset.key)


def dataset_verdicts(skill, items, gold_standard_candidates: pd.DataFrame) -> dict[str, audit.Verdict]:
    """The rules of ``skill_dataset_checks`` on what the store holds (also applied by the new-skills batch run)."""
    eligible = set(gold_standard_candidates.loc[gold_standard_candidates["eligible"], "challenge_id"].astype(str))
    return {
        "size_and_balance": audit.size_and_balance(items),
        "unique_deterministic_ids": audit.unique_deterministic_ids(skill, items),
        "no_placeholder_text": audit.no_placeholder_text(items),
        "difficulty_range": audit.difficulty_ranges(items),
        "only_eligible_real_world": audit.only_eligible_real_world(items, eligible),
        "no_personal_data": audit.no_personal_data(items),
    }


class ExperimentRegressionConfig(dg.Config):
    threshold: float = Field(
        default=0.7, ge=0, le=1, description="The mean score (0–1) under which the baseline prompt fails outright."
    )


def _experiment_metadata(record) -> dict:
    materialization = record.asset_materialization if record is not None else None
    return {k: getattr(v, "value", v) for k, v in (materialization.metadata.items() if materialization else ())}


@dg.asset_check(
    asset=prompt_experiment,
    partitions_def=skills_partitions,
    description="The regression gate on the interval: fails when a metric of the candidate (or of this run "
    "against the previous materialisation, without a candidate) is significantly worse than the baseline "
    "beyond the margin, Holm across metrics; warns when the run is underpowered; fails when the mean is "
    "under the threshold.",
)
def prompt_experiment_regression(
    context: dg.AssetCheckExecutionContext, config: ExperimentRegressionConfig
) -> dg.AssetCheckResult:
    from skill_pipeline.assets.comparison import comparison_metadata

    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=prompt_experiment.key, asset_partitions=[context.partition_key]), limit=2
    ).records
    current = _experiment_metadata(records[0]) if records else {}
    passed, reason = regression_verdict(current.get("mean"), None, config.threshold, 0.0)
    metadata: dict = {"threshold": config.threshold}
    if current.get("mean") is not None:
        metadata["mean"] = current["mean"]
    result = None
    if current.get("candidate_version") and "paired_scores" in current:
        against = f"candidate {current['candidate_version']} against baseline {current['baseline_version']}"
        result = _recompare(current, current["baseline_version"], current["candidate_version"])
    elif len(records) > 1 and "paired_scores" in current:
        previous = _experiment_metadata(records[1])
        against = f"this run of {current.get('baseline_version')} against the previous materialisation"
        result = _recompare(current, "previous", "current", previous)
    else:
        against = "no baseline to compare with (first materialisation): threshold only"
    severity = dg.AssetCheckSeverity.ERROR
    if result is not None:
        metadata.update({k: v for k, v in comparison_metadata(result).items() if not k.startswith("gate_")})
        if passed and not result.gate_passes:
            passed, reason = False, result.gate_reason
            if result.verdict == "underpowered":
                severity = dg.AssetCheckSeverity.WARN
        elif passed:
            reason = f"{reason}; {result.gate_reason}"
    metadata["compared"] = against
    metadata["reason"] = reason
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata=metadata)


def _recompare(current: dict, baseline: str, candidate: str, previous: dict | None = None):
    """The paired comparison from the stored per-item scores, with the run's own alpha, margin and
    effect of interest; ``previous`` given: its baseline scores against this run's. None when nothing
    pairs (the dataset changed in between)."""
    from skill_pipeline.core.comparison import NothingPaired, paired_comparison
    from skill_pipeline.core.experiment import payload_frame

    try:
        frame = payload_frame(current["paired_scores"])
        if previous is not None:
            old = payload_frame(previous["paired_scores"])
            frame = pd.concat([
                old[old["version"] == previous.get("baseline_version")].assign(version="previous"),
                frame[frame["version"] == current.get("baseline_version")].assign(version="current"),
            ], ignore_index=True)
        return paired_comparison(
            frame, baseline, candidate, alpha=float(current.get("alpha", 0.05)),
            margin=float(current.get("margin", 0.05)), effect_of_interest=float(current.get("effect_of_interest", 0.15)),
            cluster="skill_id",
        )
    except (NothingPaired, ValueError, KeyError, TypeError):
        return None


@dg.asset_check(
    asset=gold_standard_candidates,
    partitions_def=skills_partitions,
    description="The judge-score contract holds: when challenges of the skill have valid answers, at least one "
    "has a judge score (traces in the Opik project with metadata.challenge_id and the feedback score named by "
    "judge_score_name). None at all means a misconfigured project or score name, or a judge that is not running.",
)
def judge_scores_present(
    gold_standard_candidates: pd.DataFrame, dataset_store: DatasetStore
) -> dg.AssetCheckResult:
    # WARN, not ERROR: a new skill whose challenges the app's judge has not scored yet is not broken
    # data, and nothing unscored can be promoted ("no judge score" is a rejection), so the harm is a
    # skill starved of promotions. The failed check makes that visible on every skill at once when
    # the project or score name is wrong, which is what must not pass silently.
    passed, detail = judge_contract_verdict(
        gold_standard_candidates,
        project=getattr(dataset_store, "project_name", None) or f"the {dataset_store.backend} dataset store",
        score_name=dataset_store.judge_score_name,
    )
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata={"detail": detail}
    )
