"""The code location loads, and resources follow the environment."""

import dagster as dg

from skill_pipeline.definitions import build_definitions, build_resources
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore
from skill_pipeline.resources.llm_anthropic import AnthropicLLM
from skill_pipeline.resources.llm_offline import OfflineLLM
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore
from skill_pipeline.resources.skill_store_supabase import SupabaseSkillStore


def test_code_location_loads_with_every_asset_check_job_sensor_and_schedule():
    defs = build_definitions({})
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "synthetic_scenarios", "gold_standard_candidates", "skill_dataset", "prompt_experiment",
        "prompt_comparison_all_skills", "skills_overview",
    }
    assert {c.name for c in graph.asset_check_keys} >= {
        "synthetic_scenarios_are_complete", "size_and_balance", "unique_deterministic_ids", "no_placeholder_text",
        "difficulty_range", "only_eligible_real_world", "no_personal_data", "prompt_experiment_regression",
        "pooled_regression_gate",
    }
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"skill_dataset_job", "promotion", "experiment", "prompt_comparison"}
    assert defs.resolve_sensor_def("skill_sensor") and defs.resolve_schedule_def("promotion_schedule")
    assert defs.resolve_schedule_def("prompt_comparison_schedule")


def test_no_credentials_means_embedded_defaults():
    resources = build_resources({})
    assert isinstance(resources["skill_store"], SqliteSkillStore)
    assert isinstance(resources["dataset_store"], LocalDatasetStore)
    assert isinstance(resources["llm"], OfflineLLM)


def test_credentials_choose_the_real_backends_without_reading_the_secrets_at_load():
    env = {
        "SUPABASE_URL": "http://127.0.0.1:9/supabase",
        "SUPABASE_KEY": "service-key-never-shown",
        "OPIK_URL_OVERRIDE": "http://127.0.0.1:9/opik/api",
        "ANTHROPIC_API_KEY": "sk-ant-never-shown",
    }
    resources = build_resources(env)
    assert resources["skill_store"].access_token is None  # the key is both apikey and bearer
    with_role = build_resources({**env, "SUPABASE_ACCESS_TOKEN": "role-jwt-never-shown"})["skill_store"]
    assert isinstance(with_role.access_token, dg.EnvVar) and "never-shown" not in repr(with_role)
    assert isinstance(resources["skill_store"], SupabaseSkillStore)
    assert isinstance(resources["dataset_store"], OpikDatasetStore)
    assert isinstance(resources["llm"], AnthropicLLM)
    # Secrets are EnvVar references, resolved at run time: the loaded definitions hold no value.
    assert "never-shown" not in repr(resources)
    # Only Opik: the local app database and offline writer, so generation refuses (tested in test_pipeline).
    only_opik = build_resources({"OPIK_API_KEY": "k"})
    assert isinstance(only_opik["dataset_store"], OpikDatasetStore) and isinstance(only_opik["llm"], OfflineLLM)
