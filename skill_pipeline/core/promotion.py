"""Promotion: which real-world challenges are good items, judged on the evidence of their answers.

The seed judged a challenge by its first answer (``c.answers[0]``) after a query that kept only
correct answers, assumed a judge score of 0.8 and defaulted a missing response time to 30 s. Here
every answer counts once it is a measurement, a proportion is judged with its uncertainty, and the
difficulty a challenge is promoted at is the one its answers show (DESIGN.md, "Statistics"):

1. Row validation (``core.validation``, pandera): malformed challenges are rejected with their
   reasons, malformed answers (``ANSWER_REJECTION_REASONS``) dropped and counted.
2. Answer hygiene (``item_stats.classify_answers``): rapid guesses and idle answers are not
   measurements of the item; dropped and counted per challenge (``n_rapid_guess``, ``n_idle``).
3. Item statistics over the valid answers (``item_stats.item_statistics``): ``n_valid``, correct
   rate with its Wilson interval (``wilson_low``/``wilson_high``), response-time score over CORRECT
   answers, discrimination (needs the optional ``user_key`` column: a pseudonym the skill store
   derives; absent or null, discrimination is NaN with ``discrimination_status`` "no
   discrimination (no user keys)").
4. Calibrated difficulty (``calibration.calibrate``, per skill, needs user keys): an item whose
   calibrated level is outside its label ± 1 TAKES THE SLOT OF ITS CALIBRATED LEVEL (``difficulty``
   becomes that level, ``written_difficulty`` keeps the label). Why move rather than reject: the
   answers are the measurement and the label a guess (LLM-written labels correlate ≈ 0.24 with
   real difficulty), so a good question with a wrong label is still a good item at the level users
   found it; a bad question is caught by the other rules (a wrong key has a low correct rate and a
   negative discrimination). An item that cannot be calibrated keeps its label and says why in
   ``calibration_status``; ``require_calibration`` rejects it instead.
5. Near duplicates (``promotion_duplicates``, when the live dataset's items are passed): a
   challenge whose question (and options) reword a live item's is rejected with
   ``"near-duplicate of <item key>"`` (the one reason that names something; counted under
   ``REASON_NEAR_DUPLICATE``).
6. Eligibility: every rule the challenge fails is in ``reason``, joined with ``"; "`` in the order
   of ``REJECTION_REASONS`` (``""`` when eligible). Reasons are fixed strings without numbers; the
   numbers are in the other columns.

Output of ``score_candidates``: ``(candidates, summary)``: one row per distinct challenge id,
sorted by id, columns exactly ``Candidate``'s fields (``CANDIDATE_COLUMNS``); and a
``PromotionSummary``. Threshold comparisons allow 1e-9 of float noise. Duplicate challenge ids
keep the first row and reject it. No user key or per-answer value reaches the output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from skill_pipeline.core import item_stats
from skill_pipeline.core.candidates import (  # noqa: F401 - re-exported: the frame's API
    CANDIDATE_COLUMNS,
    PromotionSummary,
    _require_columns,
    candidates_from_frame,
    judge_contract_verdict,
    rejection_table,
    summarise,
)
from skill_pipeline.core.promotion_duplicates import near_duplicate_reason, near_duplicates_of_live, options_text
from skill_pipeline.core.promotion_reasons import *  # noqa: F403 - the vocabulary, re-exported
from skill_pipeline.core.promotion_reasons import (
    CALIBRATED_WITHOUT_LABEL,
    CALIBRATION_CONFIRMED,
    CALIBRATION_MOVED,
    HYGIENE_EXCLUSIONS,
    NO_USER_KEYS,
    NOT_CALIBRATED_PREFIX,
    REASON_INVALID_JUDGE_SCORE,
    REASON_LOW_CORRECT_RATE,
    REASON_LOW_DISCRIMINATION,
    REASON_LOW_JUDGE_SCORE,
    REASON_NO_JUDGE_SCORE,
    REASON_NO_USER_KEYS,
    REASON_NO_VALID_ANSWERS,
    REASON_NO_VARIATION,
    REASON_NOT_CALIBRATED,
    REASON_SEPARATOR,
    REASON_SLOW_RESPONSES,
    REASON_TOO_FEW_ANSWERS,
    REASON_TOO_FEW_USERS,
    REJECTION_REASONS,
)
from skill_pipeline.core.response_time import (  # noqa: F401 - the per-answer score, re-exported
    as_float_array,
    expected_response_seconds,
    response_time_score,
)
from skill_pipeline.models import GoldStandardCriteria

CHALLENGE_INPUT_COLUMNS: tuple[str, ...] = ("id", "difficulty", "question", "options_json", "correct_option", "explanation")
ANSWER_INPUT_COLUMNS: tuple[str, ...] = ("challenge_id", "is_correct", "response_time", "confidence")
MIN_CONFIDENCE, MAX_CONFIDENCE = 1.0, 5.0
THRESHOLD_TOLERANCE = 1e-9  # float noise must not flip a verdict that is mathematically on the threshold
LABEL_TOLERANCE = 1  # a calibrated level within label ± 1 confirms the label (the rule)


def confidence_score(confidence: Any) -> Any:
    """Self-reported confidence 1–5 normalised to 0–1 (``(c - 1) / 4``); NaN when missing or outside 1–5."""
    c = as_float_array(confidence)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(c) & (c >= MIN_CONFIDENCE) & (c <= MAX_CONFIDENCE)
    normalised = np.where(valid, (c - MIN_CONFIDENCE) / (MAX_CONFIDENCE - MIN_CONFIDENCE), np.nan)
    if isinstance(confidence, pd.Series):
        return pd.Series(normalised, index=confidence.index, dtype=float)
    return float(normalised.reshape(-1)[0]) if np.ndim(confidence) == 0 else normalised


def _options_for_display(value: Any, parse: Any) -> list[str]:
    """The options column: the parsed options, or the strings of a rejected row if there are strings."""
    if (parsed := parse(value)) is not None:
        return parsed
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return list(value) if isinstance(value, list | tuple) and all(isinstance(o, str) for o in value) else []


def _int_column(numbers: np.ndarray) -> pd.Series:
    return pd.Series(pd.array(numbers, dtype="Float64").astype("Int64"))


# --------------------------------------------------------------------------- the steps


def _challenge_table(challenges: pd.DataFrame, validation: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per distinct challenge id (first kept), sorted by id, and the row reasons' masks."""
    frame = challenges.reset_index(drop=True)
    row_masks = validation.challenge_reasons(frame)
    ids = validation.challenge_ids(frame["id"])
    keep = np.flatnonzero(~ids.duplicated(keep="first").to_numpy())
    keep = keep[np.argsort(ids.to_numpy(dtype=object)[keep].astype(str), kind="stable")]
    rows = frame.iloc[keep].reset_index(drop=True)
    skill = rows["skill_id"].astype(object) if "skill_id" in rows.columns else pd.Series([None] * len(rows), dtype=object)
    table = pd.DataFrame(
        {
            "challenge_id": ids.to_numpy(dtype=object)[keep].astype(str),
            "skill_id": skill.to_numpy(dtype=object),
            "difficulty": validation.integral_numbers(rows["difficulty"]),
            "question": [q if isinstance(q, str) else "" for q in rows["question"].tolist()],
            "options": [_options_for_display(v, validation.parse_options) for v in rows["options_json"].tolist()],
            "correct_option": validation.integral_numbers(rows["correct_option"]),
            "explanation": [e if isinstance(e, str) else "" for e in rows["explanation"].tolist()],
        }
    )
    with np.errstate(invalid="ignore"):
        label_ok = (table["difficulty"] >= 1) & (table["difficulty"] <= 10)
        key_ok = (table["correct_option"] >= 0) & (table["correct_option"] <= 3)
    table["difficulty"] = table["difficulty"].where(label_ok)  # a label out of range is no label
    table["correct_option"] = table["correct_option"].where(key_ok)
    return table, {reason: mask[keep] for reason, mask in row_masks.items()}


class _Answers:
    """Which answers are measurements: row validation, then hygiene; counts per challenge."""

    def __init__(self, answers: pd.DataFrame, table: pd.DataFrame, criteria: GoldStandardCriteria, validation: Any):
        frame = answers.reset_index(drop=True)
        n_items = len(table)
        codes = item_stats.index_codes(frame["challenge_id"], pd.Index(table["challenge_id"], dtype=object))
        self.matched = codes >= 0
        masks = validation.answer_reasons(frame)
        malformed = np.zeros(len(frame), dtype=bool)
        for mask in masks.values():
            malformed |= mask
        self.invalid = malformed & self.matched
        self.invalid_by_reason = {name: int((mask & self.matched).sum()) for name, mask in masks.items()}

        wellformed = self.matched & ~malformed
        rules = item_stats.AnswerHygieneRules(
            rapid_guess_fraction=criteria.rapid_guess_fraction or None,
            rapid_guess_floor_ms=criteria.rapid_guess_floor_ms or None,
            idle_multiple=criteria.idle_multiple,
            idle_cap_ms=criteria.idle_cap_ms,
        )
        hygiene = np.full(len(frame), "", dtype=object)
        difficulty = pd.Series(table["difficulty"].to_numpy(), index=table["challenge_id"].to_numpy(dtype=object))
        hygiene[wellformed] = item_stats.classify_answers(frame[wellformed], difficulty, rules).to_numpy()
        # A challenge without a valid label has no expected time: its answers cannot be judged fast
        # or slow, and the challenge is rejected for its label anyway. They stay counted.
        excluded = {name: wellformed & (hygiene == name) for name in HYGIENE_EXCLUSIONS}
        self.excluded_by_reason = {name: int(mask.sum()) for name, mask in excluded.items()}
        self.valid = wellformed & ~excluded[item_stats.REASON_RAPID_GUESS] & ~excluded[item_stats.REASON_IDLE]
        self.excluded = wellformed & ~self.valid

        def per_item(mask: np.ndarray) -> np.ndarray:
            return np.bincount(codes[mask], minlength=n_items).astype(np.int64)

        self.answer_count = per_item(self.matched)
        self.n_invalid = per_item(self.invalid)
        self.n_rapid_guess = per_item(excluded[item_stats.REASON_RAPID_GUESS])
        self.n_idle = per_item(excluded[item_stats.REASON_IDLE])
        columns = [c for c in (*ANSWER_INPUT_COLUMNS, "user_key", "chosen_option") if c in frame.columns]
        self.frame = frame.loc[self.valid, columns]
        self.has_user_keys = "user_key" in self.frame.columns and bool(self.frame["user_key"].notna().any())


def _discrimination_status(stats: pd.DataFrame, has_user_keys: bool) -> np.ndarray:
    r = stats["discrimination"].to_numpy(dtype=float)
    enough_users = stats["discrimination_n"].to_numpy() >= item_stats.ItemStatisticsParameters().min_users_for_discrimination
    missing = REASON_NO_USER_KEYS if not has_user_keys else np.where(enough_users, REASON_NO_VARIATION, REASON_TOO_FEW_USERS)
    with np.errstate(invalid="ignore"):
        band = np.select([r >= 0.3, r >= 0.2, r >= 0.0], ["good", "fair", "revise"], "negative: check the key")
    return np.where(np.isnan(r), missing, band).astype(object)


def _calibration(table: pd.DataFrame, ans: _Answers, criteria: GoldStandardCriteria) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated level or NaN, calibration_status) per challenge of ``table``."""
    n = len(table)
    if not ans.has_user_keys or n == 0:
        return np.full(n, np.nan), np.full(n, NOT_CALIBRATED_PREFIX + NO_USER_KEYS, dtype=object)
    from skill_pipeline.core.calibration import CalibrationParameters, calibrate, within_label

    keyed = ans.frame[ans.frame["user_key"].notna()]
    params = CalibrationParameters(min_answers_for_calibration=criteria.min_answers_for_calibration)
    fitted = calibrate(table.rename(columns={"challenge_id": "id"}), keyed, params)
    fitted = fitted.set_index("challenge_id").reindex(table["challenge_id"])
    level = fitted["calibrated_level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    inside = within_label(table["difficulty"].reset_index(drop=True), pd.Series(level), LABEL_TOLERANCE)
    status = np.select(
        [np.isnan(level), inside.isna().to_numpy(dtype=bool), inside.fillna(False).to_numpy(dtype=bool)],
        [NOT_CALIBRATED_PREFIX + fitted["reason"].fillna("").astype(str).to_numpy(dtype=object),
         CALIBRATED_WITHOUT_LABEL, CALIBRATION_CONFIRMED],
        CALIBRATION_MOVED,
    )
    return level, status.astype(object)


def _join_reasons(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Reason strings in ``REJECTION_REASONS`` order, vectorised over challenges."""
    reason = np.full(n, "", dtype=object)
    for name in REJECTION_REASONS:
        mask = masks.get(name)
        if mask is None or not mask.any():
            continue
        reason = np.where(mask & (reason == ""), name, np.where(mask, reason + REASON_SEPARATOR + name, reason))
    return reason


def score_candidates(
    challenges: pd.DataFrame,
    answers: pd.DataFrame,
    judge_scores: Mapping[str, float],
    criteria: GoldStandardCriteria,
    live_items: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, PromotionSummary]:
    """Every challenge of a skill, its answers' evidence, and whether it may be promoted.

    ``challenges`` needs ``CHALLENGE_INPUT_COLUMNS`` (``skill_id`` optional), ``answers``
    ``ANSWER_INPUT_COLUMNS`` (``user_key`` and ``chosen_option`` optional); a missing column raises
    ``ValueError``: that is a broken store, not a bad row. Bad rows never raise: they are rejected
    with their reasons. ``live_items`` (``promotion_duplicates.live_items_frame`` of the stored
    dataset) turns on the near-duplicate rule. Returns ``(frame, summary)``; see the module doc.
    """
    from skill_pipeline.core import validation  # pandera: imported where it validates, not at code load

    _require_columns(challenges, CHALLENGE_INPUT_COLUMNS, "challenges")
    _require_columns(answers, ANSWER_INPUT_COLUMNS, "answers")
    table, row_masks = _challenge_table(challenges, validation)
    n = len(table)
    ans = _Answers(answers, table, criteria, validation)

    stats = item_stats.item_statistics(
        table.rename(columns={"challenge_id": "id"}), ans.frame, confidence=criteria.correct_rate_confidence
    ).set_index("challenge_id").reindex(table["challenge_id"])
    n_valid = stats["n"].fillna(0).to_numpy(dtype=np.int64)
    rate = stats["correct_rate"].to_numpy(dtype=float)
    low, high = stats["correct_rate_low"].to_numpy(dtype=float), stats["correct_rate_high"].to_numpy(dtype=float)
    speed = stats["response_time_score"].to_numpy(dtype=float)
    discrimination = stats["discrimination"].to_numpy(dtype=float)
    discrimination_status = _discrimination_status(stats, ans.has_user_keys)
    level, calibration_status = _calibration(table, ans, criteria)
    label = table["difficulty"].to_numpy(dtype=float)
    slot = np.where(calibration_status == CALIBRATION_MOVED, level, label)

    judge_lookup = {str(k): v for k, v in judge_scores.items()}
    judge = pd.to_numeric(
        pd.Series([judge_lookup.get(cid) for cid in table["challenge_id"]], dtype=object), errors="coerce"
    ).to_numpy(dtype=float, na_value=np.nan)
    judge = np.where(np.isfinite(judge), judge, np.nan)

    tol = THRESHOLD_TOLERANCE
    has_valid = n_valid > 0
    no_valid_answers = ~has_valid & (ans.answer_count > 0)
    no_discrimination = np.isnan(discrimination) & criteria.require_discrimination
    with np.errstate(invalid="ignore"):
        judge_in_range = (judge >= 0.0) & (judge <= 1.0)
        masks: dict[str, np.ndarray] = {
            **row_masks,
            REASON_NO_VALID_ANSWERS: no_valid_answers,
            REASON_TOO_FEW_ANSWERS: (n_valid < criteria.min_answers) & ~no_valid_answers,
            REASON_LOW_CORRECT_RATE: has_valid & criteria.require_correct_answer
            & (low < criteria.min_correct_rate_lower_bound - tol),
            # NaN (no correct answer, or no label) compares False: no speed to judge.
            REASON_SLOW_RESPONSES: has_valid & (speed < criteria.min_response_time_score - tol),
            REASON_LOW_DISCRIMINATION: discrimination < criteria.min_discrimination - tol,
            **{name: no_discrimination & (discrimination_status == name)
               for name in (REASON_NO_USER_KEYS, REASON_TOO_FEW_USERS, REASON_NO_VARIATION)},
            REASON_NOT_CALIBRATED: np.isnan(level) & criteria.require_calibration,
            REASON_NO_JUDGE_SCORE: np.isnan(judge),
            REASON_INVALID_JUDGE_SCORE: ~np.isnan(judge) & ~judge_in_range,
            REASON_LOW_JUDGE_SCORE: judge_in_range & (judge < criteria.min_judge_score - tol),
        }
    reason = _join_reasons(masks, n)
    duplicate_of = near_duplicates_of_live(
        table["challenge_id"].tolist(),
        table["question"].tolist(),
        [options_text(o) for o in table["options"].tolist()],
        live_items,
        criteria.near_duplicate_threshold,
    ).to_numpy(dtype=object)
    near = duplicate_of != ""
    if near.any():
        named = np.array([near_duplicate_reason(k) if k else "" for k in duplicate_of], dtype=object)
        reason = np.where(near & (reason == ""), named, np.where(near, reason + REASON_SEPARATOR + named, reason))
    mean_confidence = stats["mean_confidence"].to_numpy(dtype=float)

    frame = pd.DataFrame(
        {
            "challenge_id": table["challenge_id"].astype(str),
            "difficulty": _int_column(slot),
            "question": table["question"].astype(str),
            "options": pd.Series(table["options"].tolist(), dtype=object),
            "correct_option": _int_column(table["correct_option"].to_numpy(dtype=float)),
            "explanation": table["explanation"].astype(str),
            "answer_count": ans.answer_count,
            "correct_rate": np.where(has_valid, rate, 0.0),
            "response_time_score": np.where(np.isnan(speed), 0.0, speed),
            "user_confidence": (mean_confidence - MIN_CONFIDENCE) / (MAX_CONFIDENCE - MIN_CONFIDENCE),
            "judge_composite_score": judge,
            "written_difficulty": _int_column(label),
            "n_valid": n_valid,
            "n_invalid": ans.n_invalid,
            "n_rapid_guess": ans.n_rapid_guess,
            "n_idle": ans.n_idle,
            "wilson_low": low,
            "wilson_high": high,
            "discrimination": discrimination,
            "discrimination_status": pd.Series(discrimination_status, dtype=str),
            "calibrated_level": _int_column(level),
            "calibration_status": pd.Series(calibration_status, dtype=str),
            "eligible": reason == "",
            "reason": pd.Series(reason, dtype=str),
        },
        columns=list(CANDIDATE_COLUMNS),
    )
    summary = summarise(
        frame,
        answers_read=len(answers),
        answers_invalid=int(ans.invalid.sum()),
        challenges_read=len(challenges),
        answers_unmatched=int((~ans.matched).sum()),
        answers_invalid_by_reason=ans.invalid_by_reason,
        answers_excluded_by_reason=ans.excluded_by_reason,
    )
    return frame, summary


