"""``prompt_experiment``: challenge-generation prompts run over a skill's dataset, scored, and compared.

One run per skill does everything: the baseline version and (optionally) a candidate, each over the
same items K times (``trials``), then the paired comparison of ``core.comparison``. Each (version,
trial) is one experiment in the dataset store (an Opik experiment per prompt version and dataset
when K=1), linked from the metadata.
"""


from typing import Any, Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.comparison import comparison_metadata, verdict_line
from skill_pipeline.assets.metadata import location, table
from skill_pipeline.core.budget import BudgetExceeded
from skill_pipeline.core.challenge_prompt import (
    CURRENT_PROMPT,
    JUDGE_PROMPT_VERSION,
    ChallengeParseError,
    DifficultyJudgeRequest,
    PromptVersion,
    build_challenge_request,
    get_prompt,
    parse_challenge,
    parse_difficulty_estimate,
)
from skill_pipeline.core.experiment import (
    ExperimentRecord,
    comparison_frame,
    comparison_rows,
    frame_payload,
    item_differences,
    score_frame,
    summarise_scores,
)
from skill_pipeline.core.metrics import ChallengeTaskOutput
from skill_pipeline.models import DatasetItem, Skill, dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.llm import BudgetedCalls, ScenarioLLM
from skill_pipeline.resources.skill_store import SkillStore


class PromptExperimentConfig(dg.Config):
    baseline_version: str = Field(
        default=CURRENT_PROMPT,
        description="The prompt version evaluated and compared against (a PROMPTS name; its scores are this "
        "materialisation's means).",
    )
    candidate_version: Optional[str] = Field(
        default=None,
        description="A second prompt version run on the same items and compared with the baseline (paired "
        "differences, interval, McNemar, MDE). Unset: only the baseline runs; the regression check then "
        "compares it with the previous materialisation.",
    )
    trials: int = Field(
        default=1, ge=1, le=20,
        description="Runs of each version over every item (K): the within-item variance measures the model's "
        "own noise. Each trial is one experiment and costs one pass of LLM calls.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Significance level (two-sided), Holm across metrics.")
    margin: float = Field(
        default=0.05, ge=0, le=1,
        description="Drop (0–1) tolerated: the gate fails when a metric's interval lies wholly below -margin.",
    )
    effect_of_interest: float = Field(
        default=0.15, gt=0, le=1,
        description="Smallest change that matters for one skill; a non-significant metric whose MDE exceeds it "
        "is 'underpowered' (50 items detect about 0.10-0.18).",
    )


def challenge_task(llm: ScenarioLLM | BudgetedCalls, prompt: PromptVersion, skill: Skill):
    """The experiment task: write a challenge for an item with ``prompt``, then have the judge estimate
    its difficulty and rate it. A reply that cannot be parsed is scored (0), not a crash: a prompt that
    makes the model answer garbage is worse, and the experiment must say so."""

    def task(item: DatasetItem) -> dict[str, Any]:
        reply = llm.write_challenge(build_challenge_request(prompt, item))
        usage = reply.usage
        try:
            challenge = parse_challenge(reply.text)
        except ChallengeParseError as exc:
            return ChallengeTaskOutput(
                challenge=None, parse_error=str(exc), prompt_version=prompt.label, usage=usage, llm_calls=1
            ).as_task_output()
        judged = llm.judge_difficulty(
            DifficultyJudgeRequest(challenge=challenge, skill_name=skill.name, skill_description=skill.description or "")
        )
        usage = usage + judged.usage
        ratings: dict[str, Any] = {}
        try:
            estimate = parse_difficulty_estimate(judged.text)
            difficulty, reasoning = estimate.difficulty, estimate.reasoning
            ratings = estimate.model_dump(include={"single_correct_answer", "distractor_plausibility", "requires_skill"})
        except ValueError as exc:
            difficulty, reasoning = None, f"judge reply unreadable: {exc}"
        return ChallengeTaskOutput(
            challenge=challenge,
            judged_difficulty=difficulty,
            judge_reasoning=reasoning,
            prompt_version=prompt.label,
            usage=usage,
            llm_calls=2,
            **ratings,
        ).as_task_output()

    return task


@dg.asset(
    partitions_def=skills_partitions,
    group_name="experiments",
    owners=["team:learning-data"],
    kinds={"opik", "anthropic"},
    deps=["skill_dataset"],
    pool="anthropic",
    code_version=get_prompt(CURRENT_PROMPT).content_hash,
    description=(
        "The challenge-generation prompt run over every item of the skill's dataset and scored: structural "
        "metrics (option count, explanation, length, concepts, answer validity, agreement with validated "
        "questions) and an LLM judge's (difficulty, a single defensible answer, plausible distractors, needs "
        "the skill). With candidate_version: both versions on the same items, K trials each, compared by "
        "paired differences with intervals, McNemar and the MDE. code_version is the current prompt's hash."
    ),
)
def prompt_experiment(
    context: dg.AssetExecutionContext,
    config: PromptExperimentConfig,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
    llm: ScenarioLLM,
) -> dg.MaterializeResult:
    skill = skill_store.get_skill(context.partition_key)
    name = dataset_name(skill.id)
    items = dataset_store.read_items(name)
    if not items:
        raise dg.Failure(f"{name} holds no items in {dataset_store.backend}: materialise skill_dataset first")
    versions = [config.baseline_version] + ([config.candidate_version] if config.candidate_version else [])
    prompts = [get_prompt(v) for v in versions]  # an unknown version fails here, naming the known ones
    if len({p.label for p in prompts}) < len(prompts):
        raise dg.Failure(f"baseline and candidate are the same prompt ({prompts[0].label})")
    dataset_version = dataset_store.dataset_version(name) or ""

    records: dict[str, list[ExperimentRecord]] = {}
    frames: list[pd.DataFrame] = []
    calls = llm.budgeted(llm.spend_guard(context.run, skill.id))
    try:
        for role, prompt in zip(("baseline", "candidate"), prompts):
            for trial in range(config.trials):
                suffix = f"-trial{trial + 1}" if config.trials > 1 else ""
                record = dataset_store.run_experiment(
                    name,
                    items,
                    challenge_task(calls, prompt, skill),
                    experiment_name=f"{name}-{prompt.label}{suffix}",
                    experiment_config={
                        "prompt_version": prompt.label,
                        "role": role,
                        "trial": trial + 1,
                        "trials": config.trials,
                        "judge_prompt_version": JUDGE_PROMPT_VERSION,
                        "model": llm.model_name,
                        "generator": llm.generator,
                        "dataset_version": dataset_version,
                        "skill_id": skill.id,
                    },
                    threads=llm.max_concurrency,
                )
                records.setdefault(prompt.label, []).append(record)
                frames.append(score_frame(record.rows, skill_id=skill.id, version=prompt.label, trial=trial))
    except BudgetExceeded as exc:
        done = ", ".join(f"{label} ×{len(recs)}" for label, recs in records.items()) or "none"
        raise dg.Failure(
            description=f"skill {skill.id} ({skill.name}): {exc}. Experiments completed before the stop: {done}.",
            metadata={**exc.as_metadata(), "skill_name": skill.name},
            allow_retries=False,
        ) from None
    frame = pd.concat(frames, ignore_index=True)
    summaries = {label: summarise_scores([r for rec in recs for r in rec.rows]) for label, recs in records.items()}
    base = prompts[0].label
    main = summaries[base]
    first = records[base][0]
    metadata: dict[str, Any] = {
        "skill_name": skill.name,
        **main.flat_metadata(),
        "baseline_version": base,
        "judge_prompt_version": JUDGE_PROMPT_VERSION,
        "model": llm.model_name,
        "generator": llm.generator,
        "dataset_name": name,
        "dataset_version": dataset_version,
        "items_scored": int(frame["item_id"].nunique()),
        "alpha": config.alpha,
        "margin": config.margin,
        "effect_of_interest": config.effect_of_interest,
        "trials": config.trials,
        "experiment_id": first.experiment_id,
        "experiment_location": location(first.location),
        "llm_calls": sum(s.llm_calls for s in summaries.values()),
        "input_tokens": sum(s.input_tokens for s in summaries.values()),
        "output_tokens": sum(s.output_tokens for s in summaries.values()),
        "paired_scores": dg.MetadataValue.json(frame_payload(frame)),
    }
    if len(prompts) == 1:
        scores = pd.DataFrame([{"measure": r.measure, "mean": r.a} for r in comparison_rows(main, main)])
        metadata["scores"] = table(scores.astype({"mean": "float64"}).round(4))
        return dg.MaterializeResult(metadata=metadata)

    from skill_pipeline.core.comparison import paired_comparison

    cand = prompts[1].label
    result = paired_comparison(frame, base, cand, alpha=config.alpha, margin=config.margin,
                               effect_of_interest=config.effect_of_interest, cluster="skill_id")
    context.log.info(verdict_line(result))
    candidate_first = records[cand][0]
    metadata.update({
        "candidate_version": cand,
        "candidate_mean": round(summaries[cand].overall_mean or 0.0, 4),
        "candidate_experiment_id": candidate_first.experiment_id,
        "candidate_experiment_location": location(candidate_first.location),
        "scores": table(comparison_frame(main, summaries[cand], base, cand).round(4)),
        **comparison_metadata(result),
        "item_differences": table(item_differences(frame, base, cand).drop(columns="skill_id").round(4)),
        "summary": verdict_line(result),
    })
    return dg.MaterializeResult(metadata=metadata)
