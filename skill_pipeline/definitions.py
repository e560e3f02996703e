"""The code location: assets, checks, jobs, sensor, schedule, and resources chosen from the environment.

Each external system is real when its credentials are set and embedded otherwise:

| system      | real when set                                       | embedded default                        |
|-------------|-----------------------------------------------------|-----------------------------------------|
| app data    | SUPABASE_URL + SUPABASE_KEY (+ SUPABASE_ACCESS_TOKEN) | SQLite app database (demo seeds it)   |
| datasets    | OPIK_API_KEY or OPIK_URL_OVERRIDE                   | SQLite dataset store                    |
| LLM         | ANTHROPIC_API_KEY                                   | deterministic offline writer (labelled) |

Secrets are passed as ``EnvVar`` so they are read at run time and never shown in the UI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from skill_pipeline.assets.dataset import skill_dataset
from skill_pipeline.assets.generation import synthetic_scenarios
from skill_pipeline.assets.comparison import prompt_comparison_all_skills
from skill_pipeline.assets.evaluation import prompt_experiment
from skill_pipeline.assets.overview import skills_overview
from skill_pipeline.assets.promotion import gold_standard_candidates
from skill_pipeline.checks import (
    judge_scores_present,
    prompt_experiment_regression,
    skill_dataset_checks,
    synthetic_scenarios_are_complete,
)
from skill_pipeline.jobs import experiment_job, prompt_comparison_job, promotion_job, skill_dataset_job
from skill_pipeline.core.budget import BUDGET_VARIABLES
from skill_pipeline.resources import local_home
from skill_pipeline.resources.promotion_policy import POLICY_FILE_VARIABLE, load_policy
from skill_pipeline.schedules import experiment_schedule, prompt_comparison_schedule, promotion_schedule
from skill_pipeline.sensors import overview_automation_sensor, skill_sensor


LIMIT_VARIABLES: tuple[tuple[str, str, type], ...] = (
    ("requests_per_minute", "ANTHROPIC_REQUESTS_PER_MINUTE", int),
    ("output_tokens_per_minute", "ANTHROPIC_OUTPUT_TOKENS_PER_MINUTE", int),
    ("input_tokens_per_minute", "ANTHROPIC_INPUT_TOKENS_PER_MINUTE", int),
    ("rate_limit_share", "SKILL_PIPELINE_RATE_LIMIT_SHARE", float),
)


def budget_args(env: Mapping[str, str]) -> dict:
    """The deployment's spend budget and ledger (README, "Spend budget"), for either LLM backend."""
    args: dict = {}
    for field, variable in BUDGET_VARIABLES.items():
        if env.get(variable):
            args[field] = (int if field.endswith("tokens") else float)(env[variable])
    if env.get("SKILL_PIPELINE_SPEND_LEDGER"):
        args["spend_ledger_path"] = env["SKILL_PIPELINE_SPEND_LEDGER"]
    return args


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The three resources for this environment (see the module docstring)."""
    env = os.environ if env is None else env
    home = local_home()

    if env.get("SUPABASE_URL") and env.get("SUPABASE_KEY"):
        from skill_pipeline.resources.skill_store_supabase import SupabaseSkillStore

        skill_store: dg.ConfigurableResource = SupabaseSkillStore(
            url=dg.EnvVar("SUPABASE_URL"), key=dg.EnvVar("SUPABASE_KEY"),
            # The read-only role's JWT (supabase/README.md), when the deployment has one.
            **({"access_token": dg.EnvVar("SUPABASE_ACCESS_TOKEN")} if env.get("SUPABASE_ACCESS_TOKEN") else {}),
        )
    else:
        from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore

        skill_store = SqliteSkillStore(path=str(home / "app.sqlite"))

    if env.get("OPIK_API_KEY") or env.get("OPIK_URL_OVERRIDE"):
        from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore

        opik_args: dict = {"project_name": env.get("OPIK_PROJECT_NAME", "skill-pipeline")}
        for field, variable in (("url", "OPIK_URL_OVERRIDE"), ("api_key", "OPIK_API_KEY"), ("workspace", "OPIK_WORKSPACE")):
            if env.get(variable):
                opik_args[field] = dg.EnvVar(variable)
        if env.get("OPIK_JUDGE_SCORE_NAME"):
            opik_args["judge_score_name"] = env["OPIK_JUDGE_SCORE_NAME"]
        dataset_store: dg.ConfigurableResource = OpikDatasetStore(**opik_args)
    else:
        from skill_pipeline.resources.dataset_store_local import LocalDatasetStore

        dataset_store = LocalDatasetStore(path=str(home / "datasets.sqlite"))

    if env.get("ANTHROPIC_API_KEY"):
        from skill_pipeline.resources.llm_anthropic import AnthropicLLM

        llm_args: dict = {"api_key": dg.EnvVar("ANTHROPIC_API_KEY"), **budget_args(env)}
        if env.get("ANTHROPIC_MODEL"):
            llm_args["model"] = env["ANTHROPIC_MODEL"]
        if env.get("ANTHROPIC_BASE_URL"):
            llm_args["base_url"] = env["ANTHROPIC_BASE_URL"]
        if env.get("SKILL_PIPELINE_LLM_CONCURRENCY"):
            llm_args["max_concurrency"] = int(env["SKILL_PIPELINE_LLM_CONCURRENCY"])
        # The organisation's limits (0 or unset: learnt from the anthropic-ratelimit-* headers) and
        # this process's share of them; deploy/README.md sizes them.
        for field, variable, kind in LIMIT_VARIABLES:
            if env.get(variable):
                llm_args[field] = kind(env[variable])
        llm: dg.ConfigurableResource = AnthropicLLM(**llm_args)
    else:
        from skill_pipeline.resources.llm_offline import OfflineLLM

        llm = OfflineLLM(**budget_args(env))

    return {
        "skill_store": skill_store,
        "dataset_store": dataset_store,
        "llm": llm,
        "promotion_policy": load_policy(env.get(POLICY_FILE_VARIABLE)),
    }


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            synthetic_scenarios, gold_standard_candidates, skill_dataset, prompt_experiment, prompt_comparison_all_skills,
            skills_overview,
        ],
        asset_checks=[
            synthetic_scenarios_are_complete, skill_dataset_checks, judge_scores_present, prompt_experiment_regression
        ],
        jobs=[skill_dataset_job, promotion_job, experiment_job, prompt_comparison_job],
        sensors=[skill_sensor, overview_automation_sensor],
        schedules=[promotion_schedule, experiment_schedule, prompt_comparison_schedule],
        resources=build_resources(env),
        # Steps are light (the LLM calls inside a step are already concurrent); a process per step
        # would cost more than the work, so runs execute their steps in one process.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
