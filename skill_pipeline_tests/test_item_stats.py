"""Item analysis against figures computed by hand: hygiene rules, Wilson bounds, speed of correct
answers, corrected item–total discrimination, distractor use, and a scale run."""

import numpy as np
import pandas as pd
import pytest

from skill_pipeline.core.item_stats import (
    HYGIENE_REASONS,
    ITEM_STATISTICS_COLUMNS,
    REASON_IDLE,
    REASON_MISSING_CORRECTNESS,
    REASON_MISSING_RESPONSE_TIME,
    REASON_NO_DIFFICULTY,
    REASON_RAPID_GUESS,
    AnswerHygieneRules,
    ItemStatisticsParameters,
    classify_answers,
    hygiene_counts,
    item_statistics,
    wilson_interval,
)


def _challenges(difficulties: dict[str, int], skill: str = "s1", correct_option: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": list(difficulties), "skill_id": skill, "difficulty": list(difficulties.values()),
         "correct_option": correct_option}
    )


def _answers(rows: list[tuple]) -> pd.DataFrame:
    """rows of (challenge_id, user_key, is_correct, response_time_ms)."""
    frame = pd.DataFrame(rows, columns=["challenge_id", "user_key", "is_correct", "response_time"])
    return frame.assign(confidence=3)


# --------------------------------------------------------------------------- hygiene


def test_rapid_guess_and_idle_rules_on_a_handful_of_answers():
    # difficulty 1: expected 10 000 ms; difficulty 10: 10 + 9 × 5.5 = 59.5 s = 59 500 ms.
    difficulty = {"easy": 1, "hard": 10}
    answers = pd.DataFrame(
        {
            "challenge_id": ["hard", "hard", "easy", "easy", "easy", "easy", "hard", "easy", "ghost", "easy"],
            "response_time": [5_000, 6_000, 900, 1_200, 100_001, 100_000, 300_001, np.nan, 5_000, 5_000],
            "is_correct": [True, True, False, True, True, False, True, True, True, None],
        },
        index=list("abcdefghij"),
    )
    reasons = classify_answers(answers, difficulty)
    assert reasons.index.tolist() == list("abcdefghij")
    assert reasons.tolist() == [
        REASON_RAPID_GUESS,  # 5 000 < 0.1 × 59 500 = 5 950 ms, though above the 1 000 ms floor
        "",  # 6 000 ≥ 5 950
        REASON_RAPID_GUESS,  # 900 < 1 000 (fraction and floor)
        "",
        REASON_IDLE,  # over 10 × 10 000 ms
        "",  # exactly 10 × the expected time is not over it
        REASON_IDLE,  # under 10 × 59 500 ms but over the 300 000 ms cap
        REASON_MISSING_RESPONSE_TIME,
        REASON_NO_DIFFICULTY,  # challenge without a difficulty: no expected time
        REASON_MISSING_CORRECTNESS,
    ]
    counts = hygiene_counts(reasons)
    assert counts == {"valid": 3, REASON_MISSING_CORRECTNESS: 1, REASON_MISSING_RESPONSE_TIME: 1,
                      REASON_NO_DIFFICULTY: 1, REASON_RAPID_GUESS: 2, REASON_IDLE: 2}
    assert set(counts) == {"valid", *HYGIENE_REASONS}


def test_each_hygiene_rule_can_be_tuned_or_switched_off():
    answers = pd.DataFrame({"challenge_id": ["c"] * 3, "response_time": [1_200, 1_900, 400_000], "is_correct": True})
    only_floor = AnswerHygieneRules(rapid_guess_fraction=None, rapid_guess_floor_ms=2_000, idle_cap_ms=None)
    # difficulty 1 (10 000 ms expected): both fast answers are under the 2 000 ms floor; the cap is
    # off but 400 000 ms is still over 10 × the expected time. A Series works as the lookup too.
    assert classify_answers(answers, pd.Series({"c": 1}), only_floor).tolist() == [
        REASON_RAPID_GUESS, REASON_RAPID_GUESS, REASON_IDLE
    ]
    assert classify_answers(answers, {"c": 10}, only_floor).tolist() == [REASON_RAPID_GUESS, REASON_RAPID_GUESS, ""]
    nothing = AnswerHygieneRules(
        rapid_guess_fraction=None, rapid_guess_floor_ms=None, idle_multiple=None, idle_cap_ms=None
    )
    assert classify_answers(answers, {"c": 1}, nothing).tolist() == ["", "", ""]
    with pytest.raises(ValueError):
        AnswerHygieneRules(idle_multiple=0.5)
    assert "millisecond" in AnswerHygieneRules.model_fields["idle_cap_ms"].description


# --------------------------------------------------------------------------- proportions and speed


def test_wilson_bounds_for_five_of_ten():
    low, high = wilson_interval(np.array([5]), np.array([10]), 0.95)
    assert low[0] == pytest.approx(0.2366, abs=1e-4) and high[0] == pytest.approx(0.7634, abs=1e-4)
    rows = [("c1", f"u{k}", k < 5, 8_000) for k in range(10)]
    stats = item_statistics(_challenges({"c1": 1, "c2": 3}), _answers(rows))
    assert list(stats.columns) == list(ITEM_STATISTICS_COLUMNS)
    first = stats.iloc[0]
    assert (first["n"], first["n_correct"], first["correct_rate"]) == (10, 5, 0.5)
    assert first["correct_rate_low"] == pytest.approx(0.2366, abs=1e-4)
    assert first["correct_rate_high"] == pytest.approx(0.7634, abs=1e-4)
    assert first["mean_confidence"] == 3.0
    unanswered = stats.iloc[1]  # c2: no answers, no numbers
    assert unanswered["n"] == 0 and np.isnan(unanswered["correct_rate"]) and np.isnan(unanswered["correct_rate_low"])


def test_response_time_score_is_the_median_over_correct_answers_only():
    # difficulty 1, expected 10 s: 20 s is twice the expected time, score 1 − (2 − 1) × 0.5 = 0.5;
    # 15 s gives 0.75. A fast wrong answer (score 1) must not raise the median.
    rows = [
        ("c1", "u1", True, 20_000),
        ("c1", "u2", True, 20_000),
        ("c1", "u3", True, 15_000),
        ("c1", "u4", False, 2_000),
        ("c1", "u5", False, 2_000),
        ("c1", "u6", False, 2_000),
        ("c2", "u1", False, 3_000),
    ]
    stats = item_statistics(_challenges({"c1": 1, "c2": 1}), _answers(rows)).set_index("challenge_id")
    assert stats.loc["c1", "response_time_score"] == pytest.approx(0.5)
    assert np.isnan(stats.loc["c2", "response_time_score"])  # no correct answer: no speed


# --------------------------------------------------------------------------- discrimination


MATRIX = {  # user -> correctness on items A, B, C (one skill)
    "u1": (1, 1, 1),
    "u2": (1, 1, 0),
    "u3": (1, 0, 0),
    "u4": (0, 1, 0),
    "u5": (0, 0, 0),
    "u6": (0, 0, 1),
}


def _matrix_answers() -> pd.DataFrame:
    rows = [(item, user, bool(v), 9_000) for user, row in MATRIX.items() for item, v in zip("ABC", row)]
    return _answers(rows)


def test_discrimination_is_the_corrected_item_total_point_biserial():
    stats = item_statistics(
        _challenges({"A": 2, "B": 2, "C": 2}), _matrix_answers(),
        parameters=ItemStatisticsParameters(min_users_for_discrimination=3),
    ).set_index("challenge_id")
    rows = np.array(list(MATRIX.values()), dtype=float)
    for k, item in enumerate("ABC"):
        rest = np.delete(rows, k, axis=1).mean(axis=1)  # proportion correct on the OTHER items
        expected = np.corrcoef(rows[:, k], rest)[0, 1]
        assert stats.loc[item, "discrimination"] == pytest.approx(expected, abs=1e-12)
        assert stats.loc[item, "discrimination_n"] == 6
    # By hand for A: x = 1,1,1,0,0,0; rest = 1, .5, 0, .5, 0, .5; sxy = .25, sxx = 1.5, syy = 17/24.
    assert stats.loc["A", "discrimination"] == pytest.approx(0.25 / np.sqrt(1.5 * 17 / 24), abs=1e-12)
    assert stats.loc["A", "discrimination"] == pytest.approx(0.2425, abs=1e-4)


def test_rest_score_uses_only_other_items_of_the_same_skill_and_one_observation_per_user():
    answers = _matrix_answers()
    extra = _answers(
        [
            ("A", "u1", True, 9_000),  # a second attempt: u1 counts once on A (mean of attempts = 1)
            ("A", "u7", True, 9_000),  # u7 answered nothing else in the skill: no rest score
            ("X", "u5", True, 9_000),  # another skill: not part of u5's rest score on A, B, C
            ("X", "u6", False, 9_000),
        ]
    )
    challenges = pd.concat([_challenges({"A": 2, "B": 2, "C": 2}), _challenges({"X": 2}, skill="s2")])
    params = ItemStatisticsParameters(min_users_for_discrimination=3)
    base = item_statistics(challenges, answers, parameters=params).set_index("challenge_id")
    more = item_statistics(challenges, pd.concat([answers, extra]), parameters=params).set_index("challenge_id")
    assert more.loc["A", "n"] == 8  # every valid answer counts for the correct rate...
    assert more.loc["A", "discrimination_n"] == 6  # ...but u7 has no rest score
    for item in "ABC":
        assert more.loc[item, "discrimination"] == pytest.approx(base.loc[item, "discrimination"], abs=1e-12)
    assert np.isnan(more.loc["X", "discrimination"])  # X's users have no other item in s2


def test_discrimination_is_negative_for_a_miskeyed_item_and_nan_without_evidence():
    rng = np.random.default_rng(7)
    ability = rng.normal(size=200)
    rows = []
    for u, a in enumerate(ability):
        for item in ("I1", "I2", "I3", "I4"):
            rows.append((item, f"u{u}", bool(rng.random() < 1 / (1 + np.exp(-2 * a))), 9_000))
        rows.append(("BAD", f"u{u}", bool(rng.random() < 1 / (1 + np.exp(2 * a))), 9_000))  # the strong get it wrong
    stats = item_statistics(_challenges(dict.fromkeys(["I1", "I2", "I3", "I4", "BAD"], 3)), _answers(rows))
    stats = stats.set_index("challenge_id")
    # (the rest score includes BAD, which drags the good items down a little)
    assert (stats.loc[["I1", "I2", "I3", "I4"], "discrimination"] > 0.2).all()
    assert stats.loc["BAD", "discrimination"] < -0.2
    # Fewer users than the minimum, or everybody right: no discrimination.
    few = item_statistics(_challenges({"A": 2, "B": 2, "C": 2}), _matrix_answers())  # default minimum 20 > 6
    assert few["discrimination"].isna().all()
    all_right = _answers([(item, f"u{u}", True, 9_000) for u in range(30) for item in "AB"])
    assert item_statistics(_challenges({"A": 2, "B": 2}), all_right)["discrimination"].isna().all()
    no_keys = _matrix_answers().drop(columns="user_key")
    assert item_statistics(_challenges({"A": 2, "B": 2, "C": 2}), no_keys)["discrimination_n"].eq(0).all()


# --------------------------------------------------------------------------- distractors


def test_distractor_shares_rare_distractors_and_key_mismatches():
    chosen = [2] * 12 + [0] * 7 + [1] + [np.nan] * 3  # key 2; option 3 never chosen
    correct = [True] * 12 + [False] * 8 + [True, False, True]
    answers = pd.DataFrame(
        {"challenge_id": "c1", "user_key": [f"u{k}" for k in range(23)], "is_correct": correct,
         "response_time": 9_000, "confidence": 4, "chosen_option": chosen}
    )
    answers.loc[0, "is_correct"] = False  # chose the key but logged wrong: a key or logging problem
    stats = item_statistics(_challenges({"c1": 4}, correct_option=2), answers).iloc[0]
    assert stats["n"] == 23 and stats["n_with_choice"] == 20
    shares = [stats[f"option_{k}_share"] for k in range(4)]
    assert shares == pytest.approx([0.35, 0.05, 0.60, 0.0])
    assert stats["rare_distractors"] == 1  # option 3 (0 %); option 1 at exactly 5 % is not below it
    assert stats["key_mismatches"] == 1
    without = item_statistics(_challenges({"c1": 4}), answers.drop(columns="chosen_option")).iloc[0]
    assert without["n_with_choice"] == 0 and np.isnan(without["rare_distractors"])


def test_invalid_answers_must_be_filtered_first():
    answers = _answers([("c1", "u1", None, 9_000)])
    with pytest.raises(ValueError, match="classify_answers"):
        item_statistics(_challenges({"c1": 1}), answers)
    with pytest.raises(ValueError, match="lacks columns"):
        item_statistics(_challenges({"c1": 1}), answers.drop(columns="response_time"))


# --------------------------------------------------------------------------- scale


def test_item_statistics_on_two_hundred_thousand_answers():
    rng = np.random.default_rng(0)
    n_answers, n_items, n_users = 200_000, 300, 20_000
    challenges = pd.DataFrame(
        {"id": [f"c{i:04d}" for i in range(n_items)], "skill_id": [f"s{i % 6}" for i in range(n_items)],
         "difficulty": rng.integers(1, 11, n_items), "correct_option": rng.integers(0, 4, n_items)}
    )
    item = rng.integers(0, n_items, n_answers)
    answers = pd.DataFrame(
        {
            "challenge_id": challenges["id"].to_numpy()[item],
            "user_key": pd.Series(rng.integers(0, n_users, n_answers)).map(lambda u: f"user-{u}"),
            "is_correct": rng.random(n_answers) < 0.6,
            "response_time": rng.lognormal(10, 0.5, n_answers),
            "confidence": rng.integers(1, 6, n_answers),
            "chosen_option": rng.integers(0, 4, n_answers),
        }
    )
    reasons = classify_answers(answers, challenges.set_index("id")["difficulty"])
    valid = answers[reasons == ""]
    stats = item_statistics(challenges, valid)
    assert len(stats) == n_items
    assert stats["n"].sum() == len(valid)
    expected_n = valid["challenge_id"].value_counts().reindex(stats["challenge_id"], fill_value=0)
    assert stats["n"].tolist() == expected_n.tolist()
    assert stats["discrimination"].notna().all()
