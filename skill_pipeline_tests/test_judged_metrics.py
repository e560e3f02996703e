"""The judge-rated metrics (a single defensible answer, plausible distractors, needs the skill,
difficulty on target), the long frame of a comparison and its stored form."""

import math

import pandas as pd
import pytest

from skill_pipeline.core.challenge_prompt import Challenge
from skill_pipeline.core.comparison import paired_comparison
from skill_pipeline.core.experiment import (
    ScoreRow,
    frame_payload,
    item_differences,
    payload_frame,
    score_frame,
    score_row,
)
from skill_pipeline.core.metrics import (
    JUDGED_METRICS,
    METRIC_NAMES,
    DifficultyOnTarget,
    DistractorPlausibility,
    RequiresSkill,
    SingleCorrectAnswer,
)
from skill_pipeline_tests.test_metrics import GOOD, synthetic_item


def test_judged_metrics_are_registered():
    assert set(JUDGED_METRICS) <= set(METRIC_NAMES)


@pytest.mark.parametrize(("rating", "value"), [(1, 0.0), (3, 0.5), (5, 1.0)])
def test_likert_ratings_map_to_0_1(rating, value):
    for metric, field in ((DistractorPlausibility(), "distractor_plausibility"), (RequiresSkill(), "requires_skill")):
        result = metric.score(challenge=GOOD, **{field: rating})
        assert result.value == value and f"{rating}/5" in result.reason


def test_a_missing_rating_does_not_apply_and_a_missing_challenge_scores_0():
    assert DistractorPlausibility().score(challenge=GOOD, distractor_plausibility=None) == []
    assert RequiresSkill().score(challenge=GOOD) == []
    assert SingleCorrectAnswer().score(challenge=GOOD) == []
    assert SingleCorrectAnswer().score(challenge=None, single_correct_answer=True).value == 0.0
    assert RequiresSkill().score(challenge=None, requires_skill=5).value == 0.0


def test_single_correct_answer_needs_a_sound_key_whatever_the_judge_says():
    assert SingleCorrectAnswer().score(challenge=GOOD, single_correct_answer=True).value == 1.0
    assert SingleCorrectAnswer().score(challenge=GOOD, single_correct_answer=False).value == 0.0
    broken = Challenge(**{**GOOD, "correct_index": 7})
    result = SingleCorrectAnswer().score(challenge=broken, single_correct_answer=True)
    assert result.value == 0.0 and "correct_index" in result.reason


def test_difficulty_on_target_is_pass_fail_on_the_blind_estimate():
    item = synthetic_item(difficulty=5)  # range 4-6
    metric = DifficultyOnTarget()
    assert metric.score(challenge=GOOD, expected_output=item.expected_output, judged_difficulty=6).value == 1.0
    assert metric.score(challenge=GOOD, expected_output=item.expected_output, judged_difficulty=7).value == 0.0
    assert metric.score(challenge=GOOD, expected_output=item.expected_output, judged_difficulty=None).value == 0.0


def test_score_row_counts_the_calls_of_the_task_output():
    item = synthetic_item()
    row = score_row(item, {"usage": {"input_tokens": 9, "output_tokens": 3}, "llm_calls": 2}, {"M": 1.0})
    assert (row.input_tokens, row.output_tokens, row.llm_calls) == (9, 3, 2)


def _rows(values: dict[str, tuple[float, float]]) -> list[ScoreRow]:
    return [ScoreRow(item_id=i, difficulty=3, source="synthetic", scores={"A": a, "B": b}) for i, (a, b) in values.items()]


def test_score_frame_round_trips_through_the_stored_payload():
    frame = pd.concat([
        score_frame(_rows({"i1": (1.0, 0.5), "i2": (0.0, 0.25)}), skill_id="s", version="v1", trial=0),
        score_frame(_rows({"i1": (0.0, 0.5), "i2": (0.0, 0.125)}), skill_id="s", version="v2", trial=0),
    ], ignore_index=True)
    assert list(frame.columns) == ["skill_id", "item_id", "version", "trial", "metric", "score"] and len(frame) == 8
    back = payload_frame(frame_payload(frame))
    key = ["version", "item_id", "metric"]
    pd.testing.assert_frame_equal(back.sort_values(key).reset_index(drop=True), frame.sort_values(key).reset_index(drop=True))
    with pytest.raises(ValueError):
        payload_frame({"format": "something else"})


def test_item_differences_average_trials_then_metrics():
    frame = pd.concat([
        score_frame(_rows({"i1": (1.0, 1.0)}), skill_id="s", version="a", trial=0),
        score_frame(_rows({"i1": (0.0, 1.0)}), skill_id="s", version="b", trial=0),
        score_frame(_rows({"i1": (1.0, 1.0)}), skill_id="s", version="b", trial=1),
    ], ignore_index=True)
    [row] = item_differences(frame, "a", "b").to_dict("records")
    assert row["mean_baseline"] == 1.0 and row["mean_candidate"] == 0.75 and row["diff"] == -0.25


def test_a_planted_difference_through_the_adapter_is_inside_the_interval():
    """ScoreRow → frame → comparison: 60 items, candidate 0.2 lower on A with noise."""
    import numpy as np

    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.9, 60)
    cand = np.clip(base - 0.2 + rng.normal(0, 0.05, 60), 0, 1)
    frame = pd.concat([
        score_frame(_rows({f"i{k}": (base[k], 1.0) for k in range(60)}), skill_id="s", version="a"),
        score_frame(_rows({f"i{k}": (cand[k], 1.0) for k in range(60)}), skill_id="s", version="b"),
    ], ignore_index=True)
    result = paired_comparison(frame, "a", "b", margin=0.05, effect_of_interest=0.1)
    a = result.metric("A")
    assert a.ci_low < float(np.mean(cand - base)) < a.ci_high and a.ci_high < -0.05 and a.verdict == "worse"
    assert result.metric("B").verdict == "no difference" and not result.gate_passes
    assert math.isfinite(a.mde) and a.mde < 0.05
