"""The deployment's promotion policy: set once, read by every run, overridable per run, bad values refused."""

from __future__ import annotations

import dagster as dg
import pytest

from skill_pipeline.definitions import build_definitions
from skill_pipeline.demo.seed import demo_skill_id
from skill_pipeline.resources.promotion_policy import POLICY_FILE_VARIABLE, PromotionPolicy, load_policy
from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

SQL = demo_skill_id("SQL Querying")


def test_a_policy_file_sets_the_deployment_values(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("min_judge_score: 0.8\nmax_promotions: 2\n")
    policy = load_policy(str(path))
    assert (policy.min_judge_score, policy.max_promotions, policy.min_answers) == (0.8, 2, PromotionPolicy().min_answers)
    defs = build_definitions({POLICY_FILE_VARIABLE: str(path)})
    assert defs.resources["promotion_policy"].min_judge_score == 0.8


@pytest.mark.parametrize(
    ("text", "named"),
    [("min_judge_score: 7\n", "min_judge_score=7"), ("min_judge: 0.5\n", "min_judge"), ("- 1\n", "mapping")],
)
def test_a_bad_policy_file_is_refused_naming_the_value(tmp_path, text, named):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=named) as caught:
        load_policy(str(path))
    assert POLICY_FILE_VARIABLE in str(caught.value)


def test_run_overrides_apply_to_that_run_only_and_are_shown(tmp_path):
    resources = {**local_resources(tmp_path), "promotion_policy": PromotionPolicy(min_judge_score=0.75)}
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        default = materialize_skill(instance, resources, SQL)
        meta = metadata(default, "gold_standard_candidates")
        assert meta["criteria"]["min_judge_score"] == 0.75 and meta["criteria_overridden_by_run"] == {}

        strict = materialize_skill(
            instance, resources, SQL,
            run_config={"ops": {"gold_standard_candidates": {"config": {"min_judge_score": 0.95}}}},
        )
        meta = metadata(strict, "gold_standard_candidates")
        assert meta["criteria"]["min_judge_score"] == 0.95
        assert meta["criteria_overridden_by_run"] == {"min_judge_score": 0.95}


def test_an_out_of_range_override_is_refused_naming_field_and_value(tmp_path):
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        with pytest.raises(Exception, match="min_judge_score") as caught:
            materialize_skill(
                instance, resources, SQL,
                run_config={"ops": {"gold_standard_candidates": {"config": {"min_judge_score": 7}}}},
            )
        assert "7" in str(caught.value)
