"""``prompt_experiment``: the challenge-generation prompt run over a skill's dataset and scored."""

from typing import Any, Optional

import dagster as dg
from pydantic import Field

from skill_pipeline.assets.metadata import location
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
from skill_pipeline.core.experiment import ExperimentSummary, compare, summarise_scores
from skill_pipeline.core.metrics import ChallengeTaskOutput
from skill_pipeline.models import DatasetItem, dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.core.experiment import ExperimentRecord
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.skill_store import SkillStore


class PromptExperimentConfig(dg.Config):
    prompt_version: str = Field(
        default=CURRENT_PROMPT,
        description="The challenge-generation prompt version evaluated (and recorded as this materialisation's score).",
    )
    candidate_prompt_version: Optional[str] = Field(
        default=None,
        description="A second prompt version run on the same items; both results appear side by side in the metadata.",
    )


def challenge_task(llm: ScenarioLLM, prompt: PromptVersion, skill_name: str):
    """The experiment task: write a challenge for an item with ``prompt``, then have the judge
    estimate its difficulty. A reply that cannot be parsed is scored (0), not a crash: a prompt that
    makes the model answer garbage is worse, and the experiment must say so."""

    def task(item: DatasetItem) -> dict[str, Any]:
        reply = llm.write_challenge(build_challenge_request(prompt, item))
        usage = reply.usage
        try:
            challenge = parse_challenge(reply.text)
        except ChallengeParseError as exc:
            return ChallengeTaskOutput(
                challenge=None, parse_error=str(exc), prompt_version=prompt.label, usage=usage
            ).as_task_output()
        judged = llm.judge_difficulty(DifficultyJudgeRequest(challenge=challenge, skill_name=skill_name))
        usage = usage + judged.usage
        try:
            estimate = parse_difficulty_estimate(judged.text)
            difficulty, reasoning = estimate.difficulty, estimate.reasoning
        except ValueError as exc:
            difficulty, reasoning = None, f"judge reply unreadable: {exc}"
        return ChallengeTaskOutput(
            challenge=challenge,
            judged_difficulty=difficulty,
            judge_reasoning=reasoning,
            prompt_version=prompt.label,
            usage=usage,
        ).as_task_output()

    return task


def _summary_table(summary: ExperimentSummary) -> str:
    lines = ["| group | items | mean |", "|---|---|---|"]
    for prefix, groups in (("band", summary.by_band), ("source", summary.by_source)):
        for key, group in groups.items():
            mean = "–" if group.mean is None else f"{group.mean:.3f}"
            lines.append(f"| {prefix} {key} | {group.items} | {mean} |")
    lines += ["", "| metric | mean | items |", "|---|---|---|"]
    lines += [f"| {m} | {v:.3f} | {summary.metric_counts.get(m, 0)} |" for m, v in summary.metric_means.items()]
    return "\n".join(lines)


@dg.asset(
    partitions_def=skills_partitions,
    group_name="evaluation",
    kinds={"opik", "anthropic"},
    deps=["skill_dataset"],
    pool="anthropic",
    code_version=get_prompt(CURRENT_PROMPT).content_hash,
    description=(
        "The challenge-generation prompt run over every item of the skill's dataset and scored (option "
        "count, explanation, length bounds, concept coverage, difficulty alignment by an LLM judge, answer "
        "validity, agreement with validated real-world questions). Recorded as an Opik experiment with the "
        "prompt version, model and dataset version. code_version is the current prompt's hash, so a prompt "
        "change shows the experiments as out of date."
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
    versions = [config.prompt_version] + ([config.candidate_prompt_version] if config.candidate_prompt_version else [])
    prompts = [get_prompt(v) for v in versions]  # an unknown version fails here, naming the known ones
    dataset_version = dataset_store.dataset_version(name) or ""

    summaries: list[ExperimentSummary] = []
    records: list[ExperimentRecord] = []
    for prompt in prompts:
        record = dataset_store.run_experiment(
            name,
            items,
            challenge_task(llm, prompt, skill.name),
            experiment_name=f"{name}-{prompt.label}",
            experiment_config={
                "prompt_version": prompt.label,
                "judge_prompt_version": JUDGE_PROMPT_VERSION,
                "model": llm.model_name,
                "generator": llm.generator,
                "dataset_version": dataset_version,
                "skill_id": skill.id,
            },
            threads=llm.max_concurrency,
        )
        records.append(record)
        summaries.append(summarise_scores(record.rows))
        context.log.info(f"{record.experiment_name}: mean {summaries[-1].overall_mean}")

    main = summaries[0]
    metadata: dict[str, Any] = {
        "skill_name": skill.name,
        **main.flat_metadata(),
        "prompt_version": prompts[0].label,
        "judge_prompt_version": JUDGE_PROMPT_VERSION,
        "model": llm.model_name,
        "generator": llm.generator,
        "dataset_name": name,
        "dataset_version": dataset_version,
        "experiment_id": records[0].experiment_id,
        "experiment_location": location(records[0].location),
        "scores": dg.MetadataValue.md(_summary_table(main)),
    }
    if len(prompts) == 2:
        candidate = summaries[1]
        metadata["candidate_prompt_version"] = prompts[1].label
        metadata["candidate_mean"] = round(candidate.overall_mean or 0.0, 4)
        metadata["candidate_experiment_id"] = records[1].experiment_id
        metadata["comparison"] = dg.MetadataValue.md(compare(main, candidate, prompts[0].label, prompts[1].label))
    return dg.MaterializeResult(metadata=metadata)
