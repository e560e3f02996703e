"""Promotion core: every rule with a hand-computed expectation.

Expected response time at difficulty d is 10 + (d - 1) * 5.5 seconds; past it the score falls by
0.5 per multiple of the expected time (ratio 1.5 -> 0.75, ratio 3 -> 0.0). The response-time score
of a challenge is the median over its CORRECT valid answers. Wilson 95% bounds by hand
(z = 1.96): 5/10 -> 0.2366, 16/20 -> 0.5840, 10/10 -> 0.7225, 3/5 -> 0.2307.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from skill_pipeline.core.promotion import (
    ANSWER_INVALID_CONFIDENCE,
    ANSWER_MISSING_IS_CORRECT,
    ANSWER_MISSING_RESPONSE_TIME,
    ANSWER_NEGATIVE_RESPONSE_TIME,
    CANDIDATE_COLUMNS,
    REASON_DUPLICATE_ID,
    REASON_EMPTY_QUESTION,
    REASON_INVALID_CORRECT_OPTION,
    REASON_INVALID_DIFFICULTY,
    REASON_INVALID_JUDGE_SCORE,
    REASON_INVALID_OPTIONS,
    REASON_LOW_CORRECT_RATE,
    REASON_LOW_JUDGE_SCORE,
    REASON_MISSING_ID,
    REASON_NO_JUDGE_SCORE,
    REASON_NO_VALID_ANSWERS,
    REASON_SLOW_RESPONSES,
    REASON_TOO_FEW_ANSWERS,
    REJECTION_REASONS,
    PromotionSummary,
    candidates_from_frame,
    confidence_score,
    expected_response_seconds,
    response_time_score,
    score_candidates,
    summarise,
)
from skill_pipeline.core.validation import parse_options
from skill_pipeline.models import Candidate, GoldStandardCriteria

OPTIONS = ["Paris", "London", "Berlin", "Madrid"]
CRITERIA = GoldStandardCriteria()  # rt >= 0.6, judge >= 0.7, Wilson low >= 0.5, >= 10 valid answers
# Only the rule under test: aggregation tests on a handful of answers.
LENIENT = GoldStandardCriteria(min_answers=1, require_correct_answer=False)


def challenge(cid: str, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": cid,
        "skill_id": "skill-1",
        "difficulty": 1,
        "question": f"Which city is the capital of France? ({cid})",
        "options_json": json.dumps(OPTIONS),
        "correct_option": 0,
        "explanation": "Paris has been the capital since 987.",
    }
    row.update(overrides)
    return row


def answer(cid: str, correct: Any = True, ms: Any = 5_000, confidence: Any = 4) -> dict[str, Any]:
    return {"challenge_id": cid, "is_correct": correct, "response_time": ms, "confidence": confidence}


def good_answers(cid: str, n: int = 10) -> list[dict[str, Any]]:
    return [answer(cid) for _ in range(n)]


def frames(challenges: list[dict], answers: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    answer_frame = pd.DataFrame(answers, columns=["challenge_id", "is_correct", "response_time", "confidence"])
    return pd.DataFrame(challenges), answer_frame


def score(challenges, answers, judge=None, criteria=CRITERIA):
    ch, an = frames(challenges, answers)
    if judge is None:
        judge = {row["id"]: 0.9 for row in challenges if isinstance(row.get("id"), str)}
    return score_candidates(ch, an, judge, criteria)


def row_of(frame: pd.DataFrame, cid: str) -> pd.Series:
    rows = frame[frame["challenge_id"] == cid]
    assert len(rows) == 1, f"{cid} appears {len(rows)} times"
    return rows.iloc[0]


# --------------------------------------------------------------------------- per-answer scores


@pytest.mark.parametrize(
    ("ms", "difficulty", "expected"),
    [
        (5_000, 1, 1.0),  # ratio 0.5
        (9_999, 1, 1.0),  # just under 1
        (10_000, 1, 1.0),  # ratio exactly 1
        (15_000, 1, 0.75),  # ratio 1.5
        (20_000, 1, 0.5),  # ratio 2
        (30_000, 1, 0.0),  # ratio 3
        (45_000, 1, 0.0),  # ratio 4.5: would be -0.75, clamped
        (0, 1, 1.0),
        (89_250, 10, 0.75),  # expected 59.5 s, ratio 1.5
        (42_000, 3, 0.5),  # expected 21 s, ratio 2
        (31_000, 2, 1 - (31 / 15.5 - 1) * 0.5),  # expected 15.5 s, ratio 2 -> 0.5
    ],
)
def test_response_time_score_by_ratio(ms, difficulty, expected):
    assert response_time_score(ms, difficulty) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("difficulty", "seconds"), [(1, 10.0), (2, 15.5), (3, 21.0), (5, 32.0), (9, 54.0), (10, 59.5)]
)
def test_expected_seconds_per_difficulty(difficulty, seconds):
    assert expected_response_seconds(difficulty) == pytest.approx(seconds)
    # at exactly the expected time the score is still full, a second later it is not
    assert response_time_score(seconds * 1000, difficulty) == 1.0
    assert response_time_score(seconds * 1000 + 1000, difficulty) < 1.0


def test_response_time_score_is_vectorised_and_keeps_the_index():
    times = pd.Series([5_000, 15_000, 30_000, 40_000, None, -1], index=[10, 11, 12, 13, 14, 15])
    difficulty = pd.Series([1, 1, 1, 1, 1, 1], index=[0, 1, 2, 3, 4, 5])  # matched by position
    result = response_time_score(times, difficulty)
    assert isinstance(result, pd.Series)
    assert list(result.index) == [10, 11, 12, 13, 14, 15]
    assert result.iloc[:4].tolist() == [1.0, 0.75, 0.0, 0.0]
    assert result.iloc[4:].isna().all()  # missing and negative times are not scored, not defaulted


@pytest.mark.parametrize("difficulty", [0, 11, 2.5, None, "hard"])
def test_response_time_score_of_an_invalid_difficulty_is_nan(difficulty):
    assert math.isnan(response_time_score(5_000, difficulty))
    assert math.isnan(expected_response_seconds(difficulty))


def test_confidence_normalisation():
    result = confidence_score(pd.Series([1, 2, 3, 4, 5, 0, 6, None]))
    assert result.iloc[:5].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.iloc[5:].isna().all()


# --------------------------------------------------------------------------- aggregation


def test_aggregates_over_all_answers():
    # difficulty 1, expected 10 s: times give scores 1.0, 0.9, 0.75, 0.5, 0.0 -> median 0.75
    answers = [
        answer("c1", True, 5_000, 1),
        answer("c1", False, 12_000, 2),
        answer("c1", True, 15_000, 3),
        answer("c1", True, 20_000, 5),
        answer("c1", False, 30_000, None),
    ]
    frame, summary = score([challenge("c1")], answers, criteria=LENIENT)
    row = row_of(frame, "c1")
    assert row["answer_count"] == row["n_valid"] == 5
    assert row["correct_rate"] == pytest.approx(0.6)
    assert row["wilson_low"] == pytest.approx(0.2307, abs=1e-4)
    # correct answers only: 1.0, 0.75, 0.5 -> 0.75 (the wrong 12 s and 30 s answers do not count)
    assert row["response_time_score"] == pytest.approx(0.75)
    assert row["user_confidence"] == pytest.approx((0 + 0.25 + 0.5 + 1.0) / 4)  # the null one is skipped
    assert row["judge_composite_score"] == pytest.approx(0.9)
    assert row["eligible"] and row["reason"] == ""
    assert summary.answers_read == 5 and summary.answers_invalid == 0 and summary.eligible == 1


def test_median_of_an_even_number_of_answers():
    # scores 1.0, 1.0, 0.5, 0.0 -> median (1.0 + 0.5) / 2
    answers = [answer("c1", ms=ms) for ms in (1_000, 2_000, 20_000, 60_000)]
    frame, _ = score([challenge("c1")], answers, criteria=LENIENT)
    assert row_of(frame, "c1")["response_time_score"] == pytest.approx(0.75)


def test_no_confidence_at_all_is_missing_not_zero():
    frame, _ = score([challenge("c1")], [answer("c1", confidence=None) for _ in range(10)])
    row = row_of(frame, "c1")
    assert math.isnan(row["user_confidence"])
    assert row["eligible"]  # confidence is reported, not a criterion
    assert candidates_from_frame(frame)[0].user_confidence is None


def test_first_answers_correct_and_fast_but_most_answers_wrong_is_ineligible():
    answers = [answer("c1", True, 2_000) for _ in range(2)] + [answer("c1", False, 40_000) for _ in range(10)]
    frame, _ = score([challenge("c1")], answers)
    row = row_of(frame, "c1")
    assert row["n_valid"] == 12
    assert row["correct_rate"] == pytest.approx(2 / 12)
    assert row["response_time_score"] == 1.0  # the two correct answers were fast; the wrong ones do not count
    assert not row["eligible"]
    assert row["reason"] == REASON_LOW_CORRECT_RATE


def test_first_answer_wrong_and_slow_but_most_answers_right_and_fast_is_eligible():
    answers = [answer("c1", False, 60_000)] + [answer("c1", True, 4_000) for _ in range(12)]
    frame, _ = score([challenge("c1")], answers)
    row = row_of(frame, "c1")
    assert row["correct_rate"] == pytest.approx(12 / 13)
    assert row["response_time_score"] == 1.0
    assert row["eligible"] and row["reason"] == ""


def test_a_fast_wrong_answer_no_longer_scores_speed():
    # 10 correct answers at 25 s (score 0.25) and 10 wrong ones at 3 s (score 1.0), difficulty 1.
    # Over all answers the median would be (0.25 + 1.0) / 2 = 0.625 and pass 0.6; over correct ones 0.25.
    answers = [answer("c1", True, 25_000) for _ in range(10)] + [answer("c1", False, 3_000) for _ in range(10)]
    frame, _ = score([challenge("c1")], answers, criteria=GoldStandardCriteria(require_correct_answer=False))
    row = row_of(frame, "c1")
    assert row["response_time_score"] == pytest.approx(0.25)
    assert row["reason"] == REASON_SLOW_RESPONSES


def test_five_of_ten_correct_fails_the_wilson_bound_and_sixteen_of_twenty_passes():
    half = [answer("c1", k < 5) for k in range(10)]
    most = [answer("c2", k < 16) for k in range(20)]
    frame, _ = score([challenge("c1"), challenge("c2")], half + most)
    c1, c2 = row_of(frame, "c1"), row_of(frame, "c2")
    assert c1["correct_rate"] == pytest.approx(0.5)  # the point estimate would pass ">= 0.5"
    assert c1["wilson_low"] == pytest.approx(0.2366, abs=1e-4) and c1["wilson_high"] == pytest.approx(0.7634, abs=1e-4)
    assert c1["reason"] == REASON_LOW_CORRECT_RATE
    assert c2["wilson_low"] == pytest.approx(0.5840, abs=1e-4) and c2["eligible"]
    # a 90% interval is narrower: 5/10 -> 0.2693, still under 0.5
    frame, _ = score([challenge("c1")], half, criteria=GoldStandardCriteria(correct_rate_confidence=0.9))
    assert row_of(frame, "c1")["wilson_low"] == pytest.approx(0.2693, abs=1e-4)


def test_zero_and_a_billion_milliseconds_are_excluded_with_their_reasons():
    answers = good_answers("c1") + [answer("c1", False, 0), answer("c1", False, 1e9)]
    frame, summary = score([challenge("c1")], answers)
    row = row_of(frame, "c1")
    assert (row["answer_count"], row["n_valid"], row["n_rapid_guess"], row["n_idle"], row["n_invalid"]) == (12, 10, 1, 1, 0)
    assert row["correct_rate"] == 1.0 and row["eligible"]
    assert summary.answers_excluded == 2
    assert summary.answers_excluded_by_reason == {"rapid guess": 1, "idle": 1}
    assert summary.answers_invalid == 0


def test_thresholds_met_exactly_pass():
    # a median score of exactly 0.6 (difficulty 1, 18 s, ratio 1.8) and a judge score of exactly 0.7
    answers = [answer("c1", True, 18_000) for _ in range(10)]
    frame, _ = score([challenge("c1")], answers, judge={"c1": 0.7})
    row = row_of(frame, "c1")
    assert row["response_time_score"] == pytest.approx(0.6)
    assert row["eligible"], row["reason"]


def test_just_below_each_threshold_fails():
    answers = [answer("c1", k < 5, 18_100) for k in range(10)]
    frame, _ = score([challenge("c1")], answers, judge={"c1": 0.69})
    assert row_of(frame, "c1")["reason"] == (
        f"{REASON_LOW_CORRECT_RATE}; {REASON_SLOW_RESPONSES}; {REASON_LOW_JUDGE_SCORE}"
    )


# --------------------------------------------------------------------------- criteria


def test_missing_judge_score_is_never_assumed():
    frame, summary = score([challenge("c1"), challenge("c2")], good_answers("c1") + good_answers("c2"), judge={"c2": 0.9})
    row = row_of(frame, "c1")
    assert not row["eligible"]
    assert row["reason"] == REASON_NO_JUDGE_SCORE
    assert math.isnan(row["judge_composite_score"])
    assert row_of(frame, "c2")["eligible"]
    assert summary.rejected_by_reason[REASON_NO_JUDGE_SCORE] == 1
    assert candidates_from_frame(frame)[0].judge_composite_score is None


@pytest.mark.parametrize("value", [float("nan"), None, "n/a"])
def test_unusable_judge_score_counts_as_missing(value):
    frame, _ = score([challenge("c1")], good_answers("c1"), judge={"c1": value})
    assert row_of(frame, "c1")["reason"] == REASON_NO_JUDGE_SCORE


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_judge_score_outside_0_1_is_rejected(value):
    frame, _ = score([challenge("c1")], good_answers("c1"), judge={"c1": value})
    assert row_of(frame, "c1")["reason"] == REASON_INVALID_JUDGE_SCORE


def test_min_answers():
    challenges = [challenge("two"), challenge("three")]
    answers = good_answers("two", 9) + good_answers("three", 10)
    frame, _ = score(challenges, answers)
    assert row_of(frame, "two")["reason"] == REASON_TOO_FEW_ANSWERS
    assert row_of(frame, "three")["eligible"]
    frame, _ = score(challenges, answers, criteria=GoldStandardCriteria(min_answers=9))
    assert row_of(frame, "two")["eligible"]


def test_challenge_without_answers_is_too_few_only():
    frame, _ = score([challenge("c1")], [])
    row = row_of(frame, "c1")
    assert row["answer_count"] == 0 and row["correct_rate"] == 0.0 and row["response_time_score"] == 0.0
    # rate and speed are undefined without answers: not reported as failing
    assert row["reason"] == REASON_TOO_FEW_ANSWERS


def test_require_correct_answer_false_ignores_the_correct_rate():
    answers = [answer("c1", False) for _ in range(10)]
    frame, _ = score([challenge("c1")], answers)
    assert row_of(frame, "c1")["reason"] == REASON_LOW_CORRECT_RATE
    frame, _ = score([challenge("c1")], answers, criteria=GoldStandardCriteria(require_correct_answer=False))
    row = row_of(frame, "c1")
    assert row["correct_rate"] == 0.0
    assert row["response_time_score"] == 0.0  # no correct answer: no speed to judge, not a failure
    assert row["eligible"] and row["reason"] == ""


def test_all_reasons_in_fixed_order():
    # one slow correct answer and two wrong ones, low judge score: four rules fail at once
    answers = [answer("c1", True, 60_000), answer("c1", False), answer("c1", False)]
    frame, summary = score([challenge("c1")], answers, judge={"c1": 0.1})
    assert row_of(frame, "c1")["reason"] == "; ".join(
        [REASON_TOO_FEW_ANSWERS, REASON_LOW_CORRECT_RATE, REASON_SLOW_RESPONSES, REASON_LOW_JUDGE_SCORE]
    )
    assert summary.rejected == 1
    assert {k for k, v in summary.rejected_by_reason.items() if v} == {
        REASON_TOO_FEW_ANSWERS,
        REASON_LOW_CORRECT_RATE,
        REASON_SLOW_RESPONSES,
        REASON_LOW_JUDGE_SCORE,
    }


# --------------------------------------------------------------------------- invalid challenges


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"options_json": json.dumps(OPTIONS[:3])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(OPTIONS + ["Rome"])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(["Paris", "paris ", "Berlin", "Madrid"])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(["Paris", "", "Berlin", "Madrid"])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(["Paris", "   ", "Berlin", "Madrid"])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(["Paris", 2, "Berlin", "Madrid"])}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps(["Paris", None, "Berlin", "Madrid"])}, REASON_INVALID_OPTIONS),
        ({"options_json": '["Paris", "London", '}, REASON_INVALID_OPTIONS),
        ({"options_json": json.dumps({"a": "Paris"})}, REASON_INVALID_OPTIONS),
        ({"options_json": None}, REASON_INVALID_OPTIONS),
        ({"correct_option": 4}, REASON_INVALID_CORRECT_OPTION),
        ({"correct_option": -1}, REASON_INVALID_CORRECT_OPTION),
        ({"correct_option": 1.5}, REASON_INVALID_CORRECT_OPTION),
        ({"correct_option": "b"}, REASON_INVALID_CORRECT_OPTION),
        ({"correct_option": None}, REASON_INVALID_CORRECT_OPTION),
        ({"difficulty": 0}, REASON_INVALID_DIFFICULTY),
        ({"difficulty": 11}, REASON_INVALID_DIFFICULTY),
        ({"difficulty": 2.5}, REASON_INVALID_DIFFICULTY),
        ({"difficulty": "hard"}, REASON_INVALID_DIFFICULTY),
        ({"difficulty": None}, REASON_INVALID_DIFFICULTY),
        ({"difficulty": True}, REASON_INVALID_DIFFICULTY),
        ({"question": ""}, REASON_EMPTY_QUESTION),
        ({"question": "   "}, REASON_EMPTY_QUESTION),
        ({"question": None}, REASON_EMPTY_QUESTION),
    ],
)
def test_invalid_challenge_rows_are_rejected_with_their_reason(overrides, reason):
    bad = challenge("bad", **overrides)
    answers = good_answers("bad") + good_answers("good")
    frame, summary = score([bad, challenge("good")], answers, judge={"bad": 0.9, "good": 0.9})
    row = row_of(frame, "bad")
    assert not row["eligible"]
    assert row["reason"] == reason  # good answers and a judge score: nothing else is wrong
    assert row_of(frame, "good")["eligible"]
    assert summary.rejected_by_reason[reason] == 1
    # a rejected row never becomes a promotable candidate
    promotable = candidates_from_frame(frame, eligible_only=True)
    assert [c.challenge_id for c in promotable] == ["good"]


@pytest.mark.parametrize("missing", [None, float("nan"), "", "  "])
def test_a_challenge_without_id_is_rejected_not_dropped(missing):
    frame, summary = score([challenge(missing), challenge("good")], good_answers("good"), judge={"good": 0.9})
    assert frame["challenge_id"].tolist() == ["", "good"]
    # no answer or judge score can refer to it
    assert row_of(frame, "")["reason"] == f"{REASON_MISSING_ID}; {REASON_TOO_FEW_ANSWERS}; {REASON_NO_JUDGE_SCORE}"
    assert summary.rejected_by_reason[REASON_MISSING_ID] == 1
    assert [c.challenge_id for c in candidates_from_frame(frame, eligible_only=True)] == ["good"]


def test_string_and_list_options_are_both_read():
    challenges = [challenge("text"), challenge("list", options_json=list(OPTIONS))]
    frame, _ = score(challenges, good_answers("text") + good_answers("list"))
    assert row_of(frame, "text")["options"] == OPTIONS
    assert row_of(frame, "list")["options"] == OPTIONS
    assert frame["eligible"].all()


def test_float_difficulty_and_correct_option_from_a_nullable_column_are_accepted():
    frame, _ = score([challenge("c1", difficulty=3.0, correct_option=2.0)], good_answers("c1"))
    row = row_of(frame, "c1")
    assert row["difficulty"] == 3 and row["correct_option"] == 2 and row["eligible"]


def test_parse_options():
    assert parse_options(json.dumps(OPTIONS)) == OPTIONS
    assert parse_options(tuple(OPTIONS)) == OPTIONS
    assert parse_options(np.array(OPTIONS, dtype=object)) == OPTIONS
    assert parse_options("Paris, London, Berlin, Madrid") is None
    assert parse_options(float("nan")) is None


def test_duplicate_challenge_ids_are_rejected_once():
    challenges = [challenge("dup"), challenge("dup", question="Another question?"), challenge("ok")]
    frame, summary = score(challenges, good_answers("dup") + good_answers("ok"))
    assert frame["challenge_id"].tolist() == ["dup", "ok"]
    row = row_of(frame, "dup")
    assert row["reason"] == REASON_DUPLICATE_ID
    assert row["question"] == "Which city is the capital of France? (dup)"  # the first row is kept
    assert summary.challenges_read == 3 and summary.candidates == 2


# --------------------------------------------------------------------------- invalid answers


@pytest.mark.parametrize(
    ("bad_answer", "reason"),
    [
        (answer("c1", confidence=0), ANSWER_INVALID_CONFIDENCE),
        (answer("c1", confidence=6), ANSWER_INVALID_CONFIDENCE),
        (answer("c1", confidence="very"), ANSWER_INVALID_CONFIDENCE),
        (answer("c1", ms=None), ANSWER_MISSING_RESPONSE_TIME),
        (answer("c1", ms=float("inf")), ANSWER_MISSING_RESPONSE_TIME),
        (answer("c1", ms="slow"), ANSWER_MISSING_RESPONSE_TIME),
        (answer("c1", ms=-1), ANSWER_NEGATIVE_RESPONSE_TIME),
        (answer("c1", correct=None), ANSWER_MISSING_IS_CORRECT),
        (answer("c1", correct="yes"), ANSWER_MISSING_IS_CORRECT),
    ],
)
def test_invalid_answers_are_dropped_and_counted(bad_answer, reason):
    # Nine good answers + one bad: the bad one must not count, so the challenge has too few answers.
    # The bad one is also wrong and slow, so had it been counted the rate and speed would fail.
    bad_answer = {**bad_answer}
    if bad_answer["is_correct"] is True:
        bad_answer["is_correct"] = False
    if reason not in (ANSWER_MISSING_RESPONSE_TIME, ANSWER_NEGATIVE_RESPONSE_TIME):
        bad_answer["response_time"] = 60_000
    frame, summary = score([challenge("c1")], good_answers("c1", 9) + [bad_answer])
    row = row_of(frame, "c1")
    assert (row["answer_count"], row["n_valid"], row["n_invalid"]) == (10, 9, 1)
    assert row["correct_rate"] == 1.0 and row["response_time_score"] == 1.0
    assert row["reason"] == REASON_TOO_FEW_ANSWERS
    assert summary.answers_read == 10
    assert summary.answers_invalid == 1
    assert summary.answers_invalid_by_reason[reason] == 1
    # with min_answers 9 the remaining nine answers suffice: the bad one did not poison the rest
    frame, _ = score([challenge("c1")], good_answers("c1", 9) + [bad_answer], criteria=GoldStandardCriteria(min_answers=9))
    assert row_of(frame, "c1")["eligible"]


def test_null_confidence_is_a_valid_answer():
    frame, summary = score([challenge("c1")], [answer("c1", confidence=None) for _ in range(10)])
    assert row_of(frame, "c1")["n_valid"] == 10 and summary.answers_invalid == 0


def test_a_challenge_whose_answers_are_all_invalid_has_no_valid_answers():
    answers = [answer("c1", ms=None), answer("c1", ms=-5), answer("c1", confidence=9)]
    frame, summary = score([challenge("c1")], answers)
    row = row_of(frame, "c1")
    assert row["answer_count"] == 3 and row["n_valid"] == 0
    assert row["reason"] == REASON_NO_VALID_ANSWERS  # instead of "too few answers", not with it
    assert summary.answers_invalid == 3
    assert summary.rejected_by_reason[REASON_NO_VALID_ANSWERS] == 1
    assert summary.rejected_by_reason[REASON_TOO_FEW_ANSWERS] == 0


def test_answers_of_unknown_challenges_are_counted_apart():
    frame, summary = score([challenge("c1")], good_answers("c1") + good_answers("elsewhere", 2) + [answer(None)])
    assert frame["challenge_id"].tolist() == ["c1"]
    assert row_of(frame, "c1")["answer_count"] == 10
    assert (summary.answers_read, summary.answers_invalid, summary.answers_unmatched) == (13, 0, 3)


def test_boolean_and_integer_is_correct_columns():
    ch, _ = frames([challenge("c1")], [])
    as_int = pd.DataFrame({"challenge_id": ["c1"] * 4, "is_correct": [1, 0, 1, 1], "response_time": 1_000, "confidence": 3})
    nullable = as_int.assign(is_correct=pd.array([True, False, True, None], dtype="boolean"))
    frame, _ = score_candidates(ch, as_int, {"c1": 0.9}, LENIENT)
    assert row_of(frame, "c1")["correct_rate"] == pytest.approx(0.75)
    frame, summary = score_candidates(ch, nullable, {"c1": 0.9}, LENIENT)
    assert row_of(frame, "c1")["correct_rate"] == pytest.approx(2 / 3)
    assert summary.answers_invalid_by_reason[ANSWER_MISSING_IS_CORRECT] == 1


# --------------------------------------------------------------------------- frame shape and conversion


def test_columns_match_candidate_and_rows_are_sorted_by_id():
    challenges = [challenge("c3"), challenge("c1"), challenge("c2")]
    frame, _ = score(challenges, good_answers("c2") + good_answers("c1"))
    assert list(frame.columns) == list(Candidate.model_fields) == list(CANDIDATE_COLUMNS)
    assert frame["challenge_id"].tolist() == ["c1", "c2", "c3"]
    assert frame["eligible"].tolist() == [True, True, False]
    # the input order does not matter
    again, _ = score(list(reversed(challenges)), list(reversed(good_answers("c2") + good_answers("c1"))))
    pd.testing.assert_frame_equal(frame, again)


def test_user_ids_never_reach_the_output():
    ch, an = frames([challenge("c1")], good_answers("c1"))
    an = an.assign(user_id=[f"user-secret-{k}" for k in range(10)], user_key=[f"key-secret-{k}" for k in range(10)])
    frame, summary = score_candidates(ch, an, {"c1": 0.9}, CRITERIA)
    assert "user_id" not in frame.columns
    for secret in ("user-secret", "key-secret"):
        assert secret not in frame.to_json() and secret not in summary.model_dump_json()


def test_missing_columns_fail_naming_them():
    ch, an = frames([challenge("c1")], good_answers("c1"))
    with pytest.raises(ValueError, match="confidence"):
        score_candidates(ch, an.drop(columns=["confidence"]), {}, CRITERIA)
    with pytest.raises(ValueError, match="options_json"):
        score_candidates(ch.drop(columns=["options_json"]), an, {}, CRITERIA)


def test_empty_inputs_give_an_empty_frame_with_the_columns():
    ch = pd.DataFrame(columns=["id", "skill_id", "difficulty", "question", "options_json", "correct_option", "explanation"])
    frame, summary = score_candidates(ch, pd.DataFrame(columns=["challenge_id", "is_correct", "response_time", "confidence"]), {}, CRITERIA)
    assert frame.empty and list(frame.columns) == list(CANDIDATE_COLUMNS)
    assert summary.challenges_read == 0 and summary.eligible == 0
    assert candidates_from_frame(frame) == []


def test_candidates_from_frame_converts_types_and_nan():
    frame, _ = score([challenge("c1"), challenge("c2", difficulty=7)], good_answers("c1"), judge={"c1": 0.8})
    candidates = candidates_from_frame(frame)
    assert [c.challenge_id for c in candidates] == ["c1", "c2"]
    first, second = candidates
    assert first.model_dump(exclude={"wilson_low", "wilson_high"}) == Candidate(
        challenge_id="c1",
        difficulty=1,
        question="Which city is the capital of France? (c1)",
        options=OPTIONS,
        correct_option=0,
        explanation="Paris has been the capital since 987.",
        answer_count=10,
        correct_rate=1.0,
        response_time_score=1.0,
        user_confidence=0.75,
        judge_composite_score=0.8,
        written_difficulty=1,
        n_valid=10,
        discrimination_status="no discrimination (no user keys)",
        calibration_status="not calibrated: no user keys",
        eligible=True,
        reason="",
    ).model_dump(exclude={"wilson_low", "wilson_high"})
    assert first.wilson_low == pytest.approx(0.7225, abs=1e-4) and first.wilson_high == pytest.approx(1.0)
    assert type(first.answer_count) is int and type(first.correct_rate) is float
    assert second.judge_composite_score is None and second.user_confidence is None
    assert second.reason == f"{REASON_TOO_FEW_ANSWERS}; {REASON_NO_JUDGE_SCORE}"
    assert [c.challenge_id for c in candidates_from_frame(frame, eligible_only=True)] == ["c1"]


def test_candidates_from_frame_leaves_out_rejected_rows_it_cannot_represent():
    frame, _ = score([challenge("c1"), challenge("bad", difficulty=0)], good_answers("c1") + good_answers("bad"))
    assert [c.challenge_id for c in candidates_from_frame(frame)] == ["c1"]


def test_candidates_from_frame_refuses_an_eligible_row_that_is_not_a_candidate():
    frame, _ = score([challenge("c1")], good_answers("c1"))
    broken = frame.assign(difficulty=pd.array([0], dtype="Int64"))
    with pytest.raises(ValueError, match="'c1'.*difficulty"):
        candidates_from_frame(broken)


def test_summarise_a_stored_frame_gives_the_run_counts():
    challenges = [challenge("ok"), challenge("slow"), challenge("nojudge"), challenge("bad", difficulty=99)]
    answers = good_answers("ok") + [answer("slow", ms=90_000) for _ in range(10)] + good_answers("nojudge")
    frame, summary = score(challenges, answers, judge={"ok": 0.9, "slow": 0.9, "bad": 0.9})
    assert isinstance(summary, PromotionSummary)
    assert list(summary.rejected_by_reason) == list(REJECTION_REASONS)
    assert (summary.challenges_read, summary.eligible, summary.rejected) == (4, 1, 3)
    assert summary.rejected_by_reason[REASON_SLOW_RESPONSES] == 1
    assert summary.rejected_by_reason[REASON_NO_JUDGE_SCORE] == 1
    assert summary.rejected_by_reason[REASON_INVALID_DIFFICULTY] == 1
    assert summary.rejected_by_reason[REASON_TOO_FEW_ANSWERS] == 1  # "bad" has no answers
    again = summarise(frame, answers_read=summary.answers_read, answers_invalid=summary.answers_invalid)
    assert again.rejected_by_reason == summary.rejected_by_reason
    assert (again.eligible, again.rejected, again.challenges_read) == (1, 3, 4)


# --------------------------------------------------------------------------- scale


def test_two_hundred_thousand_answers():
    n_challenges, per_challenge = 1_000, 200
    ids = [f"ch-{i:04d}" for i in range(n_challenges)]
    challenges = pd.DataFrame([challenge(cid, difficulty=1 + i % 10) for i, cid in enumerate(ids)])
    position = np.arange(n_challenges * per_challenge)
    which = position % n_challenges  # answers interleaved, as a real table would be
    k = position // n_challenges  # k-th answer of its challenge, 0..199
    # challenge i: its first (i % 200) answers are correct -> correct rate (i % 200) / 200
    correct = k < (which % per_challenge)
    time_ms = 500.0 * (10 + (which % 10) * 5.5)  # half the expected time of the challenge's difficulty
    confidence = np.full(len(position), 3.0)
    # every 50th answer of every challenge is invalid (negative time): 4 per challenge
    time_ms[k % 50 == 49] = -1.0
    answers = pd.DataFrame(
        {
            "challenge_id": np.array(ids, dtype=object)[which],
            "is_correct": correct,
            "response_time": time_ms,
            "confidence": confidence,
        }
    )
    frame, summary = score_candidates(challenges, answers, dict.fromkeys(ids, 0.9), CRITERIA)
    assert len(frame) == n_challenges
    assert (frame["n_valid"] == per_challenge - 4).all() and (frame["answer_count"] == per_challenge).all()
    assert summary.answers_read == 200_000 and summary.answers_invalid == 4 * n_challenges
    # the dropped answers are k = 49, 99, 149, 199: count how many of them were correct
    i = np.arange(n_challenges)
    correct_valid = np.array([sum(1 for kk in range(r) if kk % 50 != 49) for r in i % per_challenge])
    assert np.allclose(frame["correct_rate"].to_numpy(), correct_valid / (per_challenge - 4))
    assert (frame.loc[correct_valid > 0, "response_time_score"] == 1.0).all()
    assert (frame["user_confidence"] == 0.5).all()
    low, _ = proportion_confint(correct_valid, per_challenge - 4, alpha=0.05, method="wilson")
    assert np.allclose(frame["wilson_low"].to_numpy(), low)
    expected_eligible = int((low >= 0.5 - 1e-9).sum())
    assert summary.eligible == expected_eligible == int(frame["eligible"].sum())
    assert summary.rejected_by_reason[REASON_LOW_CORRECT_RATE] == n_challenges - expected_eligible
