"""Rasch calibration recovers known item difficulties from simulated answers, anchored to the labels,
and refuses to guess for thinly answered items."""

import numpy as np
import pandas as pd
import pytest

from skill_pipeline.core.calibration import (
    CALIBRATION_COLUMNS,
    REASON_LABELS_DO_NOT_ORDER,
    REASON_ONE_OUTCOME,
    REASON_TOO_FEW_ANCHORS,
    REASON_TOO_FEW_ANSWERS,
    CalibrationParameters,
    calibrate,
    within_label,
)

LOGITS_PER_LEVEL = 0.5  # true b = (level − 5.5) × 0.5: levels 1–10 span −2.25..2.25 logits


def simulate_skill(seed: int = 3, *, n_items: int = 40, n_users: int = 400, per_user: int = 8, thin_items: int = 3,
                   thin_answers: int = 20, mislabeled: int = 3, skill: str = "s1"):
    """A skill with known difficulties: 40 items with true levels 1–10 (four of each), users of
    N(0, 1) ability each answering a random subset of ``per_user`` items (~80 answers per item),
    plus ``thin_items`` items answered by only ``thin_answers`` users. Labels are the true levels
    except ``mislabeled`` items, whose labels are 4 levels off."""
    rng = np.random.default_rng(seed)
    true_level = rng.permutation(np.tile(np.arange(1, 11), n_items // 10))
    true_level = np.concatenate([true_level, rng.integers(1, 11, thin_items)])
    labels = true_level.copy()
    wrong = rng.choice(n_items, mislabeled, replace=False)
    labels[wrong] = np.where(labels[wrong] <= 5, labels[wrong] + 4, labels[wrong] - 4)
    theta = rng.normal(0.0, 1.0, n_users)
    pairs = [
        np.column_stack([np.full(per_user, u), rng.choice(n_items, per_user, replace=False)]) for u in range(n_users)
    ]
    pairs += [np.column_stack([rng.choice(n_users, thin_answers, replace=False), np.full(thin_answers, n_items + t)])
              for t in range(thin_items)]
    pairs = np.concatenate(pairs)
    b = (true_level - 5.5) * LOGITS_PER_LEVEL
    correct = rng.random(len(pairs)) < 1.0 / (1.0 + np.exp(-(theta[pairs[:, 0]] - b[pairs[:, 1]])))
    ids = np.array([f"{skill}-c{i:03d}" for i in range(len(true_level))], dtype=object)
    challenges = pd.DataFrame({"id": ids, "skill_id": skill, "difficulty": labels})
    answers = pd.DataFrame(
        {"challenge_id": ids[pairs[:, 1]], "user_key": [f"{skill}-u{u}" for u in pairs[:, 0]], "is_correct": correct}
    )
    truth = pd.Series(true_level, index=ids)
    return challenges, answers, truth, set(ids[wrong])


def test_calibrated_levels_recover_the_true_difficulty():
    challenges, answers, truth, mislabeled = simulate_skill()
    result = calibrate(challenges, answers)
    assert list(result.columns) == list(CALIBRATION_COLUMNS)
    result = result.set_index("challenge_id")
    enough = result["n_answers"] >= 30
    assert enough.sum() == 40 and result.loc[enough, "calibrated"].all()
    level = result.loc[enough, "calibrated_level"].astype(float)
    within_one = (level - truth[level.index]).abs() <= 1
    assert within_one.mean() >= 0.9, within_one.mean()
    # Higher b is harder: the logits order the items like the truth does.
    assert np.corrcoef(result.loc[enough, "b"], truth[level.index])[0, 1] > 0.9
    # The wrongly labelled items are the ones the answers contradict.
    agrees = within_label(result["label"], result["calibrated_level"])
    assert not agrees[list(mislabeled)].any()
    assert agrees[enough].mean() >= 0.85
    assert (result.loc[enough, "label_distance"] == result.loc[enough, "calibrated_level"]
            - result.loc[enough, "label"]).all()


def test_items_with_too_few_answers_are_not_calibrated_never_guessed():
    challenges, answers, _, _ = simulate_skill(seed=5)
    result = calibrate(challenges, answers).set_index("challenge_id")
    thin = result[result["n_answers"] < 30]
    assert len(thin) == 3 and (thin["n_answers"] == 20).all()
    assert not thin["calibrated"].any()
    assert thin["calibrated_level"].isna().all() and thin["b"].isna().all() and thin["label_distance"].isna().all()
    assert (thin["reason"] == REASON_TOO_FEW_ANSWERS).all()
    assert (result.loc[result["calibrated"], "reason"] == "").all()
    assert within_label(thin["label"], thin["calibrated_level"]).isna().all()
    # The threshold is a parameter: at 20 answers they are calibrated too.
    relaxed = calibrate(challenges, answers, CalibrationParameters(min_answers_for_calibration=20))
    assert relaxed["calibrated"].all()


def test_skills_are_calibrated_separately():
    first = simulate_skill(seed=1, skill="s1")
    second = simulate_skill(seed=2, skill="s2")
    challenges = pd.concat([first[0], second[0]], ignore_index=True)
    answers = pd.concat([first[1], second[1]], ignore_index=True)
    together = calibrate(challenges, answers).set_index("challenge_id")
    alone = calibrate(second[0], second[1]).set_index("challenge_id")
    ids = second[0]["id"]
    assert together.loc[ids, "calibrated_level"].tolist() == alone.loc[ids, "calibrated_level"].tolist()
    assert together.loc[ids, "b"].to_numpy() == pytest.approx(alone.loc[ids, "b"].to_numpy(), abs=1e-4, nan_ok=True)
    assert set(together["skill_id"]) == {"s1", "s2"}


def test_a_skill_that_cannot_be_anchored_says_why():
    challenges, answers, truth, _ = simulate_skill(seed=4, mislabeled=0)
    reversed_labels = challenges.assign(difficulty=11 - challenges["difficulty"])
    result = calibrate(reversed_labels, answers)
    assert not result["calibrated"].any()
    assert set(result["reason"]) == {REASON_LABELS_DO_NOT_ORDER, REASON_TOO_FEW_ANSWERS}

    same_label = calibrate(challenges.assign(difficulty=5), answers)
    assert set(same_label["reason"]) == {REASON_TOO_FEW_ANCHORS, REASON_TOO_FEW_ANSWERS}

    all_right = calibrate(challenges, answers.assign(is_correct=True))
    assert set(all_right["reason"]) == {REASON_ONE_OUTCOME, REASON_TOO_FEW_ANSWERS}


def test_answers_without_a_user_key_or_outcome_are_left_out():
    challenges, answers, _, _ = simulate_skill(seed=6)
    noisy = pd.concat(
        [answers, pd.DataFrame({"challenge_id": answers["challenge_id"][:50], "user_key": None, "is_correct": True}),
         pd.DataFrame({"challenge_id": ["unknown"] * 5, "user_key": "u1", "is_correct": True}),
         pd.DataFrame({"challenge_id": answers["challenge_id"][:5], "user_key": "u1", "is_correct": None})],
        ignore_index=True,
    )
    clean = calibrate(challenges, answers)
    dirty = calibrate(challenges, noisy)
    assert dirty["n_answers"].tolist() == clean["n_answers"].tolist()
    assert dirty["calibrated_level"].tolist() == clean["calibrated_level"].tolist()
    with pytest.raises(ValueError, match="user_key"):
        calibrate(challenges, answers.drop(columns="user_key"))


def test_within_label_is_label_plus_or_minus_one():
    labels = pd.Series([5, 5, 5, 5, 1, None])
    levels = pd.Series([4, 6, 7, None, 3, 2])
    assert within_label(labels, levels).tolist() == [True, True, False, pd.NA, False, pd.NA]
    assert within_label(labels, levels, tolerance=2).tolist()[:3] == [True, True, True]
    with pytest.raises(ValueError):
        within_label([1, 2], [1])
