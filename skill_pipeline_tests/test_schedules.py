"""The schedules on a real instance: one run per active skill with a partition, keys tied to the tick."""

from datetime import datetime, timezone

import dagster as dg
import pytest

from skill_pipeline.demo.seed import DEMO_SKILLS, demo_skill_id
from skill_pipeline.schedules import experiment_schedule, promotion_schedule
from skill_pipeline_tests.dagster_helpers import local_resources, tick

ACTIVE = sorted(demo_skill_id(name) for name, _, active in DEMO_SKILLS if active)
TICK = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)


def evaluate(schedule, instance, resources, when=TICK):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources={"skill_store": resources["skill_store"]}
    )
    result = schedule(context)
    return [] if isinstance(result, dg.SkipReason) else list(result)


@pytest.mark.parametrize("schedule", [promotion_schedule, experiment_schedule])
def test_one_request_per_active_skill_keyed_by_the_tick(tmp_path, schedule):
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        assert evaluate(schedule, instance, resources) == []  # no partition yet: nothing to run
        tick(instance, resources, cursor=None)
        requests = evaluate(schedule, instance, resources)
        assert sorted(r.partition_key for r in requests) == ACTIVE
        keys = {r.run_key for r in requests}
        assert len(keys) == len(ACTIVE) and all("2026-11-25T03:00" in k for k in keys)
        # The same tick evaluated again asks for the same runs (Dagster drops repeated keys) ...
        assert {r.run_key for r in evaluate(schedule, instance, resources)} == keys
        # ... and the next day's tick for new ones.
        tomorrow = evaluate(schedule, instance, resources, TICK.replace(day=26))
        assert keys.isdisjoint(r.run_key for r in tomorrow)


def test_deactivated_skill_is_not_promoted(tmp_path):
    resources = local_resources(tmp_path)
    store = resources["skill_store"]
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        sql = store.get_skill(demo_skill_id("SQL Querying"))
        store.upsert_skill(sql.model_copy(update={"active": False}))
        requests = evaluate(promotion_schedule, instance, resources)
        assert sql.id not in {r.partition_key for r in requests} and len(requests) == len(ACTIVE) - 1


def test_promotion_schedule_is_daily_in_utc_and_running_by_default():
    assert promotion_schedule.cron_schedule == "0 3 * * *"
    assert promotion_schedule.execution_timezone == "UTC"
    assert promotion_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert experiment_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
