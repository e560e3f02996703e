"""Promotion on the evidence of answers with user keys: discrimination, calibrated slots, every
reason listed, the pandera failure cases, the judge-score contract, and the demo's simulated data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skill_pipeline.core import validation
from skill_pipeline.core.promotion import (
    CALIBRATION_CONFIRMED,
    CALIBRATION_MOVED,
    REASON_LOW_CORRECT_RATE,
    REASON_LOW_DISCRIMINATION,
    REASON_LOW_JUDGE_SCORE,
    REASON_NO_JUDGE_SCORE,
    REASON_NO_USER_KEYS,
    REASON_NOT_CALIBRATED,
    REASON_SLOW_RESPONSES,
    REASON_TOO_FEW_ANSWERS,
    REASON_TOO_FEW_USERS,
    candidates_from_frame,
    judge_contract_verdict,
    rejection_table,
    score_candidates,
)
from skill_pipeline.models import GoldStandardCriteria

OPTIONS = json.dumps(["Paris", "London", "Berlin", "Madrid"])


def challenge_rows(labels: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": cid, "skill_id": "s1", "difficulty": d, "question": f"Question {cid}?", "options_json": OPTIONS,
          "correct_option": 0, "explanation": ""} for cid, d in labels.items()]
    )


def simulated_skill(seed: int = 5, n_users: int = 300):
    """40 items with true levels 1–10 (labels true), plus "giveaway": labelled 8 but answered
    correctly by ~95% (true b = −3 logits, easier than level 1). Every user answers every item."""
    rng = np.random.default_rng(seed)
    levels = np.tile(np.arange(1, 11), 4)
    labels = {f"c{i:02d}": int(level) for i, level in enumerate(levels)} | {"giveaway": 8}
    b = np.append((levels - 5.5) * 0.5, -3.0)
    theta = rng.normal(0.0, 1.0, n_users)
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - b[None, :])))
    correct = rng.random(p.shape) < p
    ids = np.array(list(labels), dtype=object)
    users, items = np.meshgrid(np.arange(n_users), np.arange(len(ids)), indexing="ij")
    label = np.array(list(labels.values()))[items.ravel()]
    answers = pd.DataFrame({
        "challenge_id": ids[items.ravel()], "user_key": [f"k{u}" for u in users.ravel()],
        "is_correct": correct.ravel(), "response_time": 500.0 * (10 + (label - 1) * 5.5),  # half the expected time
        "confidence": 3.0,
    })
    return challenge_rows(labels), answers, dict.fromkeys(labels, 0.9)


def test_a_mislabelled_difficulty_8_item_answered_right_by_95_percent_does_not_take_a_difficulty_8_slot():
    challenges, answers, judge = simulated_skill()
    frame, summary = score_candidates(challenges, answers, judge, GoldStandardCriteria(min_discrimination=-1))
    row = frame.set_index("challenge_id").loc["giveaway"]
    assert row["correct_rate"] > 0.9 and row["written_difficulty"] == 8
    assert row["calibration_status"] == CALIBRATION_MOVED
    assert row["calibrated_level"] <= 3 and row["difficulty"] == row["calibrated_level"]  # the slot it takes
    promoted = {c.challenge_id: c for c in candidates_from_frame(frame, eligible_only=True)}
    assert promoted["giveaway"].difficulty != 8
    # the honest items keep their labels: calibrated within ±1 for at least 90% of them
    honest = frame[frame["challenge_id"] != "giveaway"]
    assert (honest["calibration_status"] == CALIBRATION_CONFIRMED).mean() >= 0.9
    assert (honest["difficulty"] == honest["written_difficulty"]).mean() >= 0.9
    assert summary.calibration_by_status[CALIBRATION_MOVED] >= 1
    # with the default criteria it takes no difficulty-8 slot either (moved, or rejected for its discrimination)
    frame, _ = score_candidates(challenges, answers, judge, GoldStandardCriteria())
    row = frame.set_index("challenge_id").loc["giveaway"]
    assert not (row["eligible"] and row["difficulty"] == 8)


def test_discrimination_is_computed_from_user_keys_and_a_wrong_key_is_rejected():
    challenges, answers, judge = simulated_skill()
    flipped = answers["challenge_id"] == "c05"  # record the key wrong: the able users are marked wrong
    answers.loc[flipped, "is_correct"] = ~answers.loc[flipped, "is_correct"].astype(bool)
    frame, _ = score_candidates(challenges, answers, judge, GoldStandardCriteria(min_correct_rate_lower_bound=0.0))
    rows = frame.set_index("challenge_id")
    assert rows.loc["c05", "discrimination"] < 0
    assert rows.loc["c05", "discrimination_status"] == "negative: check the key"
    assert REASON_LOW_DISCRIMINATION in rows.loc["c05", "reason"].split("; ")
    assert (rows.drop(index=["c05", "giveaway"])["discrimination"] > 0.2).mean() >= 0.9


@pytest.mark.parametrize("keys", ["absent", "null"])
def test_without_user_keys_discrimination_is_nan_and_says_why(keys):
    challenges, answers, judge = simulated_skill(n_users=40)
    answers = answers.drop(columns=["user_key"]) if keys == "absent" else answers.assign(user_key=None)
    frame, _ = score_candidates(challenges, answers, judge, GoldStandardCriteria())
    assert frame["discrimination"].isna().all()
    assert (frame["discrimination_status"] == REASON_NO_USER_KEYS).all()
    assert (frame["calibration_status"] == "not calibrated: no user keys").all()
    assert (frame["difficulty"] == frame["written_difficulty"]).all()
    # not required by default: the missing evidence is shown, not a rejection
    assert REASON_NO_USER_KEYS not in "; ".join(frame["reason"])
    frame, _ = score_candidates(challenges, answers, judge, GoldStandardCriteria(require_discrimination=True))
    assert frame["reason"].str.contains(REASON_NO_USER_KEYS, regex=False).all()


def test_too_few_users_for_a_discrimination():
    challenges, answers, judge = simulated_skill(n_users=15)
    frame, _ = score_candidates(challenges, answers, judge, GoldStandardCriteria(require_discrimination=True))
    assert (frame["discrimination_status"] == REASON_TOO_FEW_USERS).all()
    assert frame["reason"].str.contains(REASON_TOO_FEW_USERS, regex=False).all()


def test_every_reason_is_listed_in_order():
    challenges = challenge_rows({"c1": 1}).assign(options_json='["only", "three", "options"]', question=" ")
    answers = pd.DataFrame({"challenge_id": "c1", "is_correct": [True, False, False], "response_time": 60_000.0,
                            "confidence": 3.0})
    criteria = GoldStandardCriteria(require_discrimination=True, require_calibration=True)
    frame, summary = score_candidates(challenges, answers, {"c1": 0.2}, criteria)
    assert frame.loc[0, "reason"].split("; ") == [
        "empty question", "invalid options", REASON_TOO_FEW_ANSWERS, REASON_LOW_CORRECT_RATE, REASON_SLOW_RESPONSES,
        REASON_NO_USER_KEYS, REASON_NOT_CALIBRATED, REASON_LOW_JUDGE_SCORE,
    ]
    assert summary.rejected == 1 and sum(summary.rejected_by_reason.values()) == 8
    table = rejection_table(frame)
    assert table.loc[0, "challenge_id"] == "c1" and table.loc[0, "reason"] == frame.loc[0, "reason"]


def test_pandera_failure_cases_give_every_reason_of_every_row():
    frame = pd.DataFrame({
        "id": ["a", "a", None, "d"],
        "difficulty": [1, 0, True, 10],
        "question": ["q?", "", None, "q?"],
        "options_json": [OPTIONS, "[]", OPTIONS, OPTIONS],
        "correct_option": [0, 4, 1.5, 3],
    })
    masks = validation.challenge_reasons(frame)
    reasons = [[r for r, m in masks.items() if m[i]] for i in range(len(frame))]
    assert reasons == [
        ["duplicate challenge id"],
        ["duplicate challenge id", "invalid difficulty", "empty question", "invalid options", "invalid correct option"],
        ["missing challenge id", "invalid difficulty", "empty question", "invalid correct option"],
        [],
    ]
    answers = pd.DataFrame({"challenge_id": "a", "is_correct": [True, None, "yes"],
                            "response_time": [1_000, -5, None], "confidence": [3, 9, None]})
    masks = validation.answer_reasons(answers)
    assert [[r for r, m in masks.items() if m[i]] for i in range(3)] == [
        [], ["missing is_correct", "negative response time", "confidence outside 1-5"],
        ["missing is_correct", "missing response time"],
    ]


def test_the_judge_score_contract_check_names_the_project_and_the_score():
    challenges, answers, judge = simulated_skill(n_users=20)
    frame, _ = score_candidates(challenges, answers, {}, GoldStandardCriteria())
    passed, detail = judge_contract_verdict(frame, project="skill-pipeline", score_name="judge_composite")
    assert not passed
    assert "'skill-pipeline'" in detail and "'judge_composite'" in detail and "41 challenges" in detail
    assert (frame["reason"].str.contains(REASON_NO_JUDGE_SCORE)).all()
    frame, _ = score_candidates(challenges, answers, {"c01": 0.9}, GoldStandardCriteria())
    assert judge_contract_verdict(frame, "p", "s")[0]
    unanswered, _ = score_candidates(challenges, answers.iloc[:0], {}, GoldStandardCriteria())
    assert judge_contract_verdict(unanswered, "p", "s")[0]  # nothing answered: nothing to have scored


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.floats(0, 1)), min_size=1, max_size=8),
       st.floats(0.05, 0.95), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_no_item_under_the_lower_bound_minimum_is_ever_promoted(items, minimum, level):
    labels = {f"c{i}": 1 + i % 10 for i in range(len(items))}
    rows = [{"challenge_id": f"c{i}", "is_correct": k < round(n * share), "response_time": 5_000.0, "confidence": 3.0}
            for i, (n, share) in enumerate(items) for k in range(n)]
    criteria = GoldStandardCriteria(min_answers=1, min_correct_rate_lower_bound=minimum, correct_rate_confidence=level)
    frame, _ = score_candidates(challenge_rows(labels), pd.DataFrame(rows), dict.fromkeys(labels, 0.9), criteria)
    promoted = frame[frame["eligible"]]
    assert (promoted["wilson_low"] >= minimum - 1e-9).all()


def test_the_demo_data_carry_signal_once_the_store_supplies_user_keys():
    """The seed simulates users with abilities answering items with difficulties: with pseudonymised
    user keys, calibration finds the levels and discrimination is what real tests show."""
    from skill_pipeline.demo.seed import build_demo_data

    data = build_demo_data()
    challenges = pd.DataFrame(data.challenges, columns=["id", "skill_id", "difficulty", "question", "options_json",
                                                        "correct_option", "explanation", "created_at"])
    answers = pd.DataFrame(data.answers, columns=["id", "challenge_id", "user_id", "is_correct", "response_time",
                                                  "confidence", "answered_at"]).astype({"is_correct": bool})
    answers["user_key"] = [hashlib.sha256(f"demo-salt:{u}".encode()).hexdigest()[:16] for u in answers["user_id"]]
    frame, summary = score_candidates(challenges, answers.drop(columns=["user_id"]), data.judge_scores,
                                      GoldStandardCriteria())
    calibrated = frame[frame["calibrated_level"].notna()]
    truth = pd.Series(data.true_levels)[calibrated["challenge_id"]].to_numpy()
    assert len(calibrated) >= 200
    assert (np.abs(calibrated["calibrated_level"].astype(float).to_numpy() - truth) <= 1).mean() >= 0.9
    assert frame["discrimination"].median() >= 0.25
    assert summary.answers_excluded_by_reason["rapid guess"] > 0 and summary.answers_excluded_by_reason["idle"] > 0
    assert summary.eligible >= 30
    assert "user_key" not in frame.columns and "user-0" not in frame.to_json()
