"""The demo flow exactly as ``make demo`` runs it, twice, on one persistent instance."""

import importlib
import itertools
from collections import Counter

import dagster as dg
import pytest

from skill_pipeline.demo.flow import run_demo
from skill_pipeline.demo.launch import IN_PROCESS_LAUNCH, LOCATION_NAME, code_location_runs
from skill_pipeline.demo.seed import DEMO_SKILLS, build_demo_data
from skill_pipeline.models import dataset_name
from skill_pipeline.definitions import build_definitions
from skill_pipeline.sensors import SKILL_NAME_TAG, skill_sensor

REPOSITORY_LABEL = f"__repository__@{LOCATION_NAME}"


def test_demo_data_is_large_and_spread_enough():
    data = build_demo_data()
    active = [s for s in data.skills if s[3]]
    assert len(active) >= 6 and len(data.skills) > len(active)
    assert len(data.challenges) >= 300 and len(data.answers) >= 5000
    assert 0 < len(data.judge_scores) < len(data.challenges)  # some challenges lack a judge score
    assert any(a[4] is None for a in data.answers)  # a missing response time
    assert any(not a[3] for a in data.answers)  # wrong answers


@pytest.mark.slow
def test_demo_twice_fills_every_skill_then_writes_nothing():
    with dg.instance_for_test(overrides=IN_PROCESS_LAUNCH) as instance:
        first = run_demo(instance)
        assert first.ok
        active = sum(1 for _, _, active in DEMO_SKILLS if active)
        assert len(first.rows) == active
        assert all(row.items == 50 and row.synthetic + row.real_world == 50 for row in first.rows)
        assert all(row.written >= 50 for row in first.rows)
        # Promotion raised the real-world share step by step, at most 5 per skill per round.
        means = [sum(r.values()) / len(r) for r in first.promotion_rounds]
        assert len(means) >= 2 and means == sorted(means) and means[0] < means[-1]
        assert all(0 < row.real_world for row in first.rows)
        # The demo's prompt comparison: v0-terse significantly worse than v1 over every skill.
        assert f"over {active} skills: worse" in first.comparison and "(gate fails)" in first.comparison
        assert "SingleCorrectAnswer" in first.table()
        # The all-skills overview, materialised once at the end: one row per active skill.
        assert first.overview.startswith(f"skills_overview: {active} skills") and "LLM cost to date n/a" in first.overview

        # After every promotion round, the synthetic items left have no near-duplicate pair.
        store = build_definitions().resources["dataset_store"]
        assert _synthetic_near_duplicates(store, [r.skill_id for r in first.rows]) == {r.skill_id: [] for r in first.rows}
        assert_runs_are_the_code_locations_and_the_sensor_has_nothing_left(instance, active)

        second = run_demo(instance)
        assert second.ok and second.promotion_rounds == []
        assert [(row.written, row.deleted) for row in second.rows] == [(0, 0)] * active
        assert [row.real_world for row in second.rows] == [row.real_world for row in first.rows]


def _synthetic_near_duplicates(dataset_store, skill_ids) -> dict[str, list[tuple[str, str, float]]]:
    """Per skill, every pair of its dataset's synthetic items with token-set ratio ≥ 90 (rapidfuzz)."""
    from rapidfuzz import fuzz, utils

    from skill_pipeline.models import dataset_name

    found: dict[str, list[tuple[str, str, float]]] = {}
    for skill_id in skill_ids:
        items = dataset_store.read_items(dataset_name(skill_id))
        texts = [str(item.input["scenario"]) for item in items if item.source == "synthetic"]
        assert len(texts) >= 2, f"skill {skill_id}: only {len(texts)} synthetic items to compare"
        found[skill_id] = [
            (a, b, score)
            for a, b in itertools.combinations(texts, 2)
            if (score := fuzz.token_set_ratio(a, b, processor=utils.default_process)) >= 90
        ]
    return found


def test_the_demo_datasets_hold_no_near_duplicate_synthetic_items():
    """The demo's generation (seed, sensor tick, the runs it requests) on the embedded defaults:
    every skill's synthetic items, compared pairwise, have no token-set ratio of 90 or more."""
    import skill_pipeline.definitions as definitions
    from skill_pipeline.demo.stores import seed_demo_stores

    importlib.reload(definitions)  # the code location's module, under this test's environment (as run_demo)
    resources = definitions.defs.resources
    seed_demo_stores(resources["skill_store"], resources["dataset_store"])
    with dg.instance_for_test(overrides=IN_PROCESS_LAUNCH) as instance, code_location_runs(instance) as runs:
        sensor_runs = runs.tick_sensor("skill_sensor")  # step 1 of the demo; its runs execute as submitted
        assert sensor_runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in sensor_runs)
    active = [s.id for s in resources["skill_store"].list_skills(active_only=True)]
    assert len(active) == sum(1 for _, _, on in DEMO_SKILLS if on) == len(sensor_runs)
    synthetic = [
        item
        for skill_id in active
        for item in resources["dataset_store"].read_items(dataset_name(skill_id))
        if item.source == "synthetic"
    ]
    assert len(synthetic) >= 45 * len(active)  # a first run promotes at most 5 real-world items a skill
    assert {item.metadata.get("generator") for item in synthetic} == {"offline"}
    assert _synthetic_near_duplicates(resources["dataset_store"], active) == {s: [] for s in active}


def assert_runs_are_the_code_locations_and_the_sensor_has_nothing_left(instance: dg.DagsterInstance, active: int) -> None:
    """Every run is listed under its job in the UI (the job's Runs tab filters by the repository label),
    the sensor's runs carry their run keys and skill names, and the stored cursor leaves nothing to do."""
    runs = instance.get_runs()
    jobs = Counter(run.job_name for run in runs)
    assert jobs["skill_dataset_job"] == active and jobs["experiment"] == active and jobs["prompt_comparison"] == 1
    assert jobs["promotion"] >= 2 * active and jobs["__ASSET_JOB"] == 1
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    for job, count in jobs.items():
        listed = instance.get_runs(dg.RunsFilter(job_name=job, tags={".dagster/repository": REPOSITORY_LABEL}))
        assert len(listed) == count, f"{job}: {len(listed)} of {count} runs listed under the job"
    sensor_runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "skill_sensor"}))
    assert len(sensor_runs) == active and all("dagster/run_key" in r.tags and SKILL_NAME_TAG in r.tags for r in sensor_runs)
    with code_location_runs(instance) as runs_of_location:
        cursor = runs_of_location.sensor_cursor("skill_sensor")
    assert cursor
    skill_store = build_definitions().resources["skill_store"]
    again = skill_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"skill_store": skill_store}))
    assert again.run_requests == []
