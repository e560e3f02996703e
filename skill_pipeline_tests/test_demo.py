"""The demo flow exactly as ``make demo`` runs it, twice, on one persistent instance."""

import dagster as dg
import pytest

from skill_pipeline.demo.flow import run_demo
from skill_pipeline.demo.seed import DEMO_SKILLS, build_demo_data


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

        second = run_demo(instance)
        assert second.ok and second.promotion_rounds == []
        assert [(row.written, row.deleted) for row in second.rows] == [(0, 0)] * active
        assert [row.real_world for row in second.rows] == [row.real_world for row in first.rows]
