"""The all-skills overview: its rows (pure), the asset on a real instance, and readable run tags."""

import dagster as dg

from skill_pipeline.assets.overview import skills_overview
from skill_pipeline.core.cost import NOT_APPLICABLE, estimate_cost_usd, usage_metadata
from skill_pipeline.core.overview import NOT_AVAILABLE, SkillFacts, overview_frame, overview_row, share_keys, total_cost
from skill_pipeline.core.promotion_reasons import CALIBRATION_CONFIRMED, CALIBRATION_MOVED, NOT_CALIBRATED_PREFIX
from skill_pipeline.demo.seed import DEMO_SKILLS, demo_skill_id
from skill_pipeline.models import TokenUsage
from skill_pipeline.sensors import SKILL_NAME_TAG
from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

ACTIVE = {demo_skill_id(name): name for name, _, active in DEMO_SKILLS if active}


# ------------------------------------------------------------------------------------------ rows
def test_row_counts_shares_calibration_checks_and_cost():
    facts = SkillFacts(
        skill_id="s1", name="SQL", items=50, real_world=10, eligible=14,
        calibration={CALIBRATION_CONFIRMED: 6, CALIBRATION_MOVED: 2, f"{NOT_CALIBRATED_PREFIX}too few answers": 5},
        last_run="SUCCESS (promotion)", checks={"size_and_balance": True, "no_personal_data": False},
        costs=[0.01, None, 0.02], location="/tmp/d.sqlite",
    )
    row = overview_row(facts)
    assert (row.items, row.synthetic, row.real_world, row.real_pct) == (50, 40, 10, 20.0)
    assert row.eligible_not_promoted == 4
    assert (row.calibrated, row.uncalibrated) == (8, 5)
    assert row.checks == "1/2 passed; failed: no_personal_data"
    assert row.llm_cost_usd == 0.03


def test_unknown_facts_read_n_a_not_zero():
    row = overview_row(SkillFacts(skill_id="s2", name="Go", items=0, costs=[None, None]))
    assert row.eligible_not_promoted == row.calibrated == row.uncalibrated == NOT_AVAILABLE
    assert row.checks == NOT_AVAILABLE and row.llm_cost_usd == NOT_AVAILABLE and row.last_run == "no run yet"
    assert row.real_pct == 0.0
    # A paid generation at an unknown price makes the total unknown, not smaller.
    assert overview_row(SkillFacts(skill_id="s3", name="X", costs=[0.5], unknown_cost=True)).llm_cost_usd == NOT_AVAILABLE


def test_share_keys_one_per_skill_plus_overall_and_frame_sorted_by_name():
    rows = [
        overview_row(SkillFacts(skill_id="b", name="Rust", items=50, real_world=5, costs=[0.1])),
        overview_row(SkillFacts(skill_id="a", name="Python", items=50, real_world=15)),
    ]
    assert share_keys(rows) == {"real_world_pct/Rust": 10.0, "real_world_pct/Python": 30.0, "real_world_pct/overall": 20.0}
    assert overview_frame(rows)["skill"].tolist() == ["Python", "Rust"]
    assert total_cost(rows) == 0.1
    twins = rows + [overview_row(SkillFacts(skill_id="c1234567xyz", name="Rust", items=50))]
    assert "real_world_pct/Rust (c1234567)" in share_keys(twins)


def test_cost_offline_is_not_applicable_and_unknown_model_is_none_with_a_warning(caplog):
    usage = TokenUsage(input_tokens=1000, output_tokens=1000)
    assert usage_metadata("offline", "offline-writer", usage)["estimated_cost_usd"] == NOT_APPLICABLE
    assert estimate_cost_usd("claude-haiku-4-5-20251001", usage) == 0.006
    assert estimate_cost_usd("gpt-unknown", TokenUsage()) == 0.0  # nothing spent
    with caplog.at_level("WARNING"):
        meta = usage_metadata("anthropic", "claude-future-9", usage)
    assert meta["estimated_cost_usd"] is None and "cost_note" in meta
    assert "claude-future-9" in caplog.text


# ----------------------------------------------------------------------------- on an instance
def test_overview_has_one_row_per_materialised_skill_and_a_share_key_each(tmp_path):
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        result = tick(instance, resources, cursor=None)
        assert {r.partition_key for r in result.run_requests} == set(ACTIVE)
        two = sorted(ACTIVE)[:2]
        for skill_id in two:
            materialize_skill(instance, resources, skill_id)
        run = dg.materialize([skills_overview], instance=instance, resources=resources)
        meta = metadata(run, "skills_overview")
    rows = {r.data["skill_id"]: r.data for r in meta["skills"].records}
    # Every active skill with a partition has a row; the two materialised ones have their dataset.
    assert set(rows) == set(ACTIVE)
    for skill_id in two:
        row = rows[skill_id]
        assert row["skill"] == ACTIVE[skill_id] and row["items"] == 50
        assert row["last_run"].startswith("SUCCESS") and row["checks"].endswith("passed")
        assert row["llm_cost_usd"] == NOT_AVAILABLE  # offline writer: nothing paid
        assert row["calibrated"] != NOT_AVAILABLE
        assert isinstance(meta[f"real_world_pct/{ACTIVE[skill_id]}"], float)
    assert {k for k in meta if k.startswith("real_world_pct/")} == {
        *(f"real_world_pct/{name}" for name in ACTIVE.values()), "real_world_pct/overall"
    }
    assert meta["skill_count"] == len(ACTIVE) and meta["llm_cost_usd_total"] == NOT_AVAILABLE
    assert all(f"dataset/{name}" in meta for name in ACTIVE.values())


def test_automation_requests_the_overview_after_a_dataset_update(tmp_path):
    from skill_pipeline.definitions import build_definitions

    resources = local_resources(tmp_path)
    defs = build_definitions({})
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the condition's baseline
        assert first.total_requested == 0
        materialize_skill(instance, resources, sorted(ACTIVE)[0])
        # Other skills are still missing: the overview is refreshed anyway (any_deps_missing dropped).
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert after.total_requested == 1
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        assert again.total_requested == 0  # handled: no second refresh without a new update


def test_sensor_and_schedule_runs_carry_the_skill_name(tmp_path):
    from skill_pipeline.schedules import promotion_schedule
    from skill_pipeline_tests.test_schedules import evaluate

    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        requests = tick(instance, resources, cursor=None).run_requests
        assert {r.partition_key: r.tags[SKILL_NAME_TAG] for r in requests} == ACTIVE
        scheduled = evaluate(promotion_schedule, instance, resources)
        assert {r.partition_key: r.tags[SKILL_NAME_TAG] for r in scheduled} == ACTIVE


def test_offline_runs_are_not_tagged_as_llm_runs():
    from skill_pipeline.jobs import experiment_job, skill_dataset_job

    assert "skill_pipeline/llm" not in (skill_dataset_job.tags or {})
    assert "skill_pipeline/llm" not in (experiment_job.tags or {})
