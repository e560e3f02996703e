"""The demo flow exactly as ``make demo`` runs it, twice, on one persistent instance."""

from collections import Counter

import dagster as dg
import pytest

from skill_pipeline.demo.flow import run_demo
from skill_pipeline.demo.launch import IN_PROCESS_LAUNCH, LOCATION_NAME, code_location_runs
from skill_pipeline.demo.seed import DEMO_SKILLS, build_demo_data
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

        assert_runs_are_the_code_locations_and_the_sensor_has_nothing_left(instance, active)

        second = run_demo(instance)
        assert second.ok and second.promotion_rounds == []
        assert [(row.written, row.deleted) for row in second.rows] == [(0, 0)] * active
        assert [row.real_world for row in second.rows] == [row.real_world for row in first.rows]


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
