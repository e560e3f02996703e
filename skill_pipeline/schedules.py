"""``promotion_schedule``: daily promotion of real-world challenges for every active skill."""


import os

import dagster as dg

from skill_pipeline.jobs import experiment_job, prompt_comparison_job, promotion_job
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.skill_store import SkillStore
from skill_pipeline.sensors import skill_tags

PROMOTION_CRON = os.environ.get("SKILL_PIPELINE_PROMOTION_CRON", "0 3 * * *")
EXPERIMENT_CRON = os.environ.get("SKILL_PIPELINE_EXPERIMENT_CRON", "0 5 * * 1")
COMPARISON_CRON = os.environ.get("SKILL_PIPELINE_COMPARISON_CRON", "0 8 * * 1")


def _requests_per_skill(context: dg.ScheduleEvaluationContext, skill_store: SkillStore, prefix: str):
    """One run request per active skill that has a partition; the run key carries the tick."""
    known = set(context.instance.get_dynamic_partitions(skills_partitions.name))
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    requests = [
        dg.RunRequest(partition_key=skill.id, run_key=f"{prefix}:{skill.id}:{tick}", tags=skill_tags(skill.name))
        for skill in skill_store.list_skills(active_only=True)
        if skill.id in known
    ]
    return requests or dg.SkipReason("no active skill has a partition yet (the skill sensor adds them)")


@dg.schedule(
    job=promotion_job,
    cron_schedule=PROMOTION_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Daily (03:00 UTC; SKILL_PIPELINE_PROMOTION_CRON) promotion run for every active skill that has a "
        "partition. Run keys carry the tick's date, so a tick is never doubled."
    ),
)
def promotion_schedule(context: dg.ScheduleEvaluationContext, skill_store: SkillStore):
    return _requests_per_skill(context, skill_store, "promotion")


@dg.schedule(
    job=experiment_job,
    cron_schedule=EXPERIMENT_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Weekly (Monday 05:00 UTC; SKILL_PIPELINE_EXPERIMENT_CRON) experiment for every active skill. Stopped "
        "by default: experiments cost LLM calls, so turn it on where they are wanted."
    ),
)
def experiment_schedule(context: dg.ScheduleEvaluationContext, skill_store: SkillStore):
    return _requests_per_skill(context, skill_store, "experiment")


@dg.schedule(
    job=prompt_comparison_job,
    cron_schedule=COMPARISON_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Weekly (Monday 08:00 UTC, after the experiments; SKILL_PIPELINE_COMPARISON_CRON) pooling of the "
        "per-skill comparisons into one verdict. One run, no LLM call; stopped with the experiment schedule."
    ),
)
def prompt_comparison_schedule(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    return dg.RunRequest(run_key=f"prompt_comparison:{tick}")
