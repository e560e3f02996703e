"""The demo flow exactly as ``make demo`` runs it, twice, on one persistent instance."""

import itertools

import dagster as dg
import pytest

from skill_pipeline.demo.flow import run_demo
from skill_pipeline.demo.seed import DEMO_SKILLS, build_demo_data
from skill_pipeline.models import dataset_name


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
    with dg.instance_for_test() as instance:
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
        from skill_pipeline.definitions import build_definitions

        store = build_definitions().resources["dataset_store"]
        assert _synthetic_near_duplicates(store, [r.skill_id for r in first.rows]) == {r.skill_id: [] for r in first.rows}

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
    from skill_pipeline.definitions import build_definitions
    from skill_pipeline.demo.flow import seed_and_generate

    defs = build_definitions()
    with dg.instance_for_test() as instance:
        written, _ = seed_and_generate(defs, instance)
    active = [s.id for s in defs.resources["skill_store"].list_skills(active_only=True)]
    assert len(active) == sum(1 for _, _, on in DEMO_SKILLS if on) and sorted(written) == sorted(active)
    synthetic = [
        item
        for skill_id in active
        for item in defs.resources["dataset_store"].read_items(dataset_name(skill_id))
        if item.source == "synthetic"
    ]
    assert len(synthetic) >= 45 * len(active)  # a first run promotes at most 5 real-world items a skill
    assert {item.metadata.get("generator") for item in synthetic} == {"offline"}
    assert _synthetic_near_duplicates(defs.resources["dataset_store"], active) == {s: [] for s in active}
