"""Promotion: per-answer scores, aggregation per challenge over ALL its answers, eligibility.

The seed judged a challenge by its first answer (``c.answers[0]``) after a query that kept only
correct answers, assumed a judge score of 0.8 and defaulted a missing response time to 30 s. Here
every answer of a challenge counts, a missing judge score is a rejection (never assumed), and every
row that cannot be trusted is rejected with a reason instead of being guessed at or crashing the run.

Output of ``score_candidates``: ``(candidates, summary)``:

- ``candidates``: one row per distinct challenge id, sorted by ``challenge_id``, columns exactly
  ``Candidate``'s fields (``CANDIDATE_COLUMNS``); ``eligible`` says whether it may be promoted and
  ``reason`` lists every rule it fails, joined with ``"; "`` in the order of ``REJECTION_REASONS``
  (``""`` when eligible). Reasons are fixed strings without numbers, so "rejected by reason" is a
  count of tokens; the numbers themselves are in the other columns.
- ``summary``: a ``PromotionSummary`` (also computable from a stored frame with ``summarise``).

Decisions worth knowing:

- Invalid ANSWERS (``ANSWER_REJECTION_REASONS``: missing ``is_correct``, missing / non-numeric /
  non-finite or negative response time, confidence outside 1–5) are dropped before aggregation
  and counted. A null confidence is not invalid: the answer counts, it just has no confidence.
  Answers of challenges that are not in the frame are counted as ``answers_unmatched``.
- A challenge that had answers but none valid is rejected with ``"no valid answers"`` (instead of
  ``"too few answers"``, which is reserved for challenges with fewer valid answers than
  ``min_answers``). With zero valid answers the correct rate and response-time score are
  undefined: the rules on them are not reported, and the columns hold 0.0 (``Candidate`` requires
  floats), next to ``answer_count == 0``.
- Threshold comparisons allow 1e-9 of float noise, so a score that is mathematically equal to the
  threshold (e.g. a correct rate of 3/5 against 0.6) passes.
- Duplicate challenge ids (impossible for a primary key, possible after a faulty paged read) keep
  the first row and reject it: a challenge whose identity is ambiguous is never promoted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from skill_pipeline.models import DIFFICULTY_LEVELS, Candidate, GoldStandardCriteria

CANDIDATE_COLUMNS: tuple[str, ...] = tuple(Candidate.model_fields)
CHALLENGE_INPUT_COLUMNS: tuple[str, ...] = ("id", "difficulty", "question", "options_json", "correct_option", "explanation")
ANSWER_INPUT_COLUMNS: tuple[str, ...] = ("challenge_id", "is_correct", "response_time", "confidence")

OPTION_COUNT = 4
MIN_DIFFICULTY, MAX_DIFFICULTY = DIFFICULTY_LEVELS[0], DIFFICULTY_LEVELS[-1]
MIN_CONFIDENCE, MAX_CONFIDENCE = 1.0, 5.0
# The seed's expectation: 10 s at difficulty 1, 5.5 s more per level; past it the score falls by
# half a point per multiple of the expected time, reaching 0 at three times the expected time.
BASE_EXPECTED_SECONDS = 10.0
SECONDS_PER_DIFFICULTY = 5.5
SLOWNESS_PENALTY = 0.5
# Float noise must not flip a verdict that is mathematically on the threshold.
THRESHOLD_TOLERANCE = 1e-9

# Why a challenge is not eligible. Reported in this order; the asset counts "rejected by reason".
REASON_MISSING_ID = "missing challenge id"
REASON_DUPLICATE_ID = "duplicate challenge id"
REASON_INVALID_DIFFICULTY = "invalid difficulty"
REASON_EMPTY_QUESTION = "empty question"
REASON_INVALID_OPTIONS = "invalid options"
REASON_INVALID_CORRECT_OPTION = "invalid correct option"
REASON_NO_VALID_ANSWERS = "no valid answers"
REASON_TOO_FEW_ANSWERS = "too few answers"
REASON_LOW_CORRECT_RATE = "correct rate below minimum"
REASON_SLOW_RESPONSES = "response time score below minimum"
REASON_NO_JUDGE_SCORE = "no judge score"
REASON_INVALID_JUDGE_SCORE = "judge score outside 0-1"
REASON_LOW_JUDGE_SCORE = "judge score below minimum"

REJECTION_REASONS: tuple[str, ...] = (
    REASON_MISSING_ID,
    REASON_DUPLICATE_ID,
    REASON_INVALID_DIFFICULTY,
    REASON_EMPTY_QUESTION,
    REASON_INVALID_OPTIONS,
    REASON_INVALID_CORRECT_OPTION,
    REASON_NO_VALID_ANSWERS,
    REASON_TOO_FEW_ANSWERS,
    REASON_LOW_CORRECT_RATE,
    REASON_SLOW_RESPONSES,
    REASON_NO_JUDGE_SCORE,
    REASON_INVALID_JUDGE_SCORE,
    REASON_LOW_JUDGE_SCORE,
)
# Reasons that say the row itself is malformed (as opposed to a well-formed challenge not good enough).
INVALID_ROW_REASONS: frozenset[str] = frozenset(REJECTION_REASONS[:6])
REASON_SEPARATOR = "; "

# Why an answer is dropped before aggregation. An answer may have several.
ANSWER_MISSING_IS_CORRECT = "missing is_correct"
ANSWER_MISSING_RESPONSE_TIME = "missing response time"
ANSWER_NEGATIVE_RESPONSE_TIME = "negative response time"
ANSWER_INVALID_CONFIDENCE = "confidence outside 1-5"
ANSWER_REJECTION_REASONS: tuple[str, ...] = (
    ANSWER_MISSING_IS_CORRECT,
    ANSWER_MISSING_RESPONSE_TIME,
    ANSWER_NEGATIVE_RESPONSE_TIME,
    ANSWER_INVALID_CONFIDENCE,
)


class PromotionSummary(BaseModel):
    """Counts for the asset's metadata.

    Answers partition as ``answers_read = used + answers_invalid + answers_unmatched``.
    ``rejected_by_reason`` holds every reason of ``REJECTION_REASONS`` (zeros included, so the
    metadata has the same keys every run); a challenge failing several rules counts under each.
    """

    challenges_read: int = Field(ge=0, description="challenge rows read (before de-duplicating ids)")
    answers_read: int = Field(ge=0)
    answers_invalid: int = Field(ge=0, description="answers of known challenges dropped as invalid")
    answers_unmatched: int = Field(default=0, ge=0, description="answers of challenges not in the frame")
    answers_invalid_by_reason: dict[str, int] = Field(default_factory=dict)
    candidates: int = Field(ge=0, description="rows of the candidates frame (distinct challenge ids)")
    eligible: int = Field(ge=0)
    rejected: int = Field(ge=0)
    rejected_by_reason: dict[str, int]


# --------------------------------------------------------------------------- per-answer scores


def _as_float_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(float)
    array = np.asarray(values, dtype=object)
    return pd.to_numeric(pd.Series(array.ravel()), errors="coerce").to_numpy(dtype=float, na_value=np.nan).reshape(
        array.shape
    )


def _valid_difficulty(difficulty: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(difficulty)
            & (difficulty == np.floor(difficulty))
            & (difficulty >= MIN_DIFFICULTY)
            & (difficulty <= MAX_DIFFICULTY)
        )


def _wrap(result: np.ndarray, like: Any) -> Any:
    """Give results the shape of the input: a Series for a Series, a float for a scalar."""
    if isinstance(like, pd.Series):
        return pd.Series(result, index=like.index, dtype=float)
    if np.ndim(like) == 0:
        return float(result.reshape(-1)[0])
    return result


def expected_response_seconds(difficulty: Any) -> Any:
    """Seconds a competent answer should take at ``difficulty`` (NaN unless an integer 1–10)."""
    d = _as_float_array(difficulty)
    expected = np.where(_valid_difficulty(d), BASE_EXPECTED_SECONDS + (d - 1) * SECONDS_PER_DIFFICULTY, np.nan)
    return _wrap(expected, difficulty)


def response_time_score(response_time_ms: Any, difficulty: Any) -> Any:
    """The seed's response-time score, element-wise: 1.0 up to the expected time, then
    ``max(0, 1 - (ratio - 1) * 0.5)``.

    Unlike the seed, a missing, non-finite or negative time (or a difficulty that is not an
    integer 1–10) gives NaN rather than a default of 30 s: the caller decides what to drop.
    Series inputs are matched by position; the result carries ``response_time_ms``'s index.
    """
    ms = _as_float_array(response_time_ms)
    d = _as_float_array(difficulty)
    if ms.shape != d.shape and d.ndim and ms.ndim:
        raise ValueError(f"response_time_ms has {ms.shape[0]} values but difficulty has {d.shape[0]}")
    expected = BASE_EXPECTED_SECONDS + (d - 1) * SECONDS_PER_DIFFICULTY
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (ms / 1000.0) / expected
        score = np.where(ratio <= 1.0, 1.0, np.maximum(0.0, 1.0 - (ratio - 1.0) * SLOWNESS_PENALTY))
        bad = ~np.isfinite(ms) | (ms < 0) | ~_valid_difficulty(d)
    score = np.where(bad, np.nan, score)
    return _wrap(score, response_time_ms)


def confidence_score(confidence: Any) -> Any:
    """Self-reported confidence 1–5 normalised to 0–1 (``(c - 1) / 4``); NaN when missing or outside 1–5."""
    c = _as_float_array(confidence)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(c) & (c >= MIN_CONFIDENCE) & (c <= MAX_CONFIDENCE)
    normalised = np.where(valid, (c - MIN_CONFIDENCE) / (MAX_CONFIDENCE - MIN_CONFIDENCE), np.nan)
    return _wrap(normalised, confidence)


# --------------------------------------------------------------------------- validation helpers


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """A missing column is a broken store, not a bad row: fail loudly, naming the columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns {missing}; it has {list(frame.columns)}")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: not a missing scalar
        return False


def parse_options(value: Any) -> list[str] | None:
    """The options of a challenge when they are exactly 4 distinct non-empty strings, else None.

    ``options_json`` is a JSON string in a text column and a list from a jsonb column (PostgREST).
    Distinctness ignores case and surrounding blanks: "Paris" and " paris" are one option twice.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or len(value) != OPTION_COUNT:
        return None
    if not all(isinstance(option, str) and option.strip() for option in value):
        return None
    if len({option.strip().casefold() for option in value}) != OPTION_COUNT:
        return None
    return list(value)


def _options_for_display(value: Any) -> list[str]:
    """What to show in the ``options`` column of a rejected row: the strings if there are strings."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple) and all(isinstance(option, str) for option in value):
        return list(value)
    return []


def _integral(values: pd.Series, low: int, high: int) -> tuple[pd.Series, np.ndarray]:
    """(Int64 column holding the value when it is an integer, else NA; mask of integers in low..high)."""
    if pd.api.types.is_bool_dtype(values.dtype):  # True is not difficulty 1
        numbers = np.full(len(values), np.nan)
    else:
        as_object = values.astype(object)
        is_bool = as_object.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        numbers = pd.to_numeric(as_object.mask(is_bool), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(numbers) & (numbers == np.floor(numbers)) & (np.abs(numbers) < 1e15)
        in_range = integral & (numbers >= low) & (numbers <= high)
    column = pd.array(np.where(integral, numbers, np.nan), dtype="Float64").astype("Int64")
    return pd.Series(column, index=values.index), in_range


def _validate_challenges(challenges: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct challenge id, sorted by id, with the row-level rejection masks."""
    raw_ids = challenges["id"].tolist()
    ids = ["" if _is_missing(v) else str(v).strip() for v in raw_ids]
    frame = challenges.reset_index(drop=True).assign(challenge_id=pd.Series(ids, dtype=object))
    frame = frame.assign(_missing_id=frame["challenge_id"] == "")
    frame = frame.assign(_duplicate_id=frame["challenge_id"].duplicated(keep=False))
    frame = frame[~frame["challenge_id"].duplicated(keep="first")]
    frame = frame.sort_values("challenge_id", kind="stable").reset_index(drop=True)

    difficulty, valid_difficulty = _integral(frame["difficulty"], MIN_DIFFICULTY, MAX_DIFFICULTY)
    correct_option, valid_correct = _integral(frame["correct_option"], 0, OPTION_COUNT - 1)
    questions = [q if isinstance(q, str) else "" for q in frame["question"].tolist()]
    explanations = [e if isinstance(e, str) else "" for e in frame["explanation"].tolist()]
    raw_options = frame["options_json"].tolist()
    parsed = [parse_options(value) for value in raw_options]
    options = [p if p is not None else _options_for_display(v) for p, v in zip(parsed, raw_options)]

    return pd.DataFrame(
        {
            "challenge_id": frame["challenge_id"].astype(str),
            "difficulty": difficulty,
            "question": pd.Series(questions, dtype=str),
            "options": pd.Series(options, dtype=object),
            "correct_option": correct_option,
            "explanation": pd.Series(explanations, dtype=str),
            "_missing_id": frame["_missing_id"].to_numpy(dtype=bool),
            "_duplicate_id": frame["_duplicate_id"].to_numpy(dtype=bool),
            "_invalid_difficulty": ~valid_difficulty,
            "_empty_question": np.array([not q.strip() for q in questions], dtype=bool),
            "_invalid_options": np.array([p is None for p in parsed], dtype=bool),
            "_invalid_correct_option": ~valid_correct,
        }
    )


class _Answers:
    """Validated answers as aligned arrays (no per-answer Python loop)."""

    def __init__(self, answers: pd.DataFrame, challenge_ids: pd.Series) -> None:
        ids = answers["challenge_id"]
        if not (pd.api.types.is_string_dtype(ids.dtype) or ids.dtype == object):
            ids = ids.astype(str)
        index = pd.Index(challenge_ids.to_numpy(dtype=object))
        codes = index.get_indexer(ids.astype(str).str.strip()) if len(index) else np.full(len(ids), -1)
        self.matched = codes >= 0

        raw_correct = answers["is_correct"]
        if pd.api.types.is_bool_dtype(raw_correct.dtype):
            valid_correct = raw_correct.notna().to_numpy(dtype=bool)
        elif pd.api.types.is_numeric_dtype(raw_correct.dtype):
            valid_correct = raw_correct.isin([0, 1]).to_numpy(dtype=bool)
        else:  # object: True/False/1/0 (True == 1 for isin), anything else is not an answer we can read
            valid_correct = raw_correct.isin([True, False]).to_numpy(dtype=bool)
        is_correct = np.zeros(len(answers), dtype=float)
        is_correct[valid_correct] = raw_correct.to_numpy(dtype=object)[valid_correct].astype(float)

        time_ms = _as_float_array(answers["response_time"])
        with np.errstate(invalid="ignore"):
            missing_time = ~np.isfinite(time_ms)
            negative_time = np.isfinite(time_ms) & (time_ms < 0)
        raw_confidence = answers["confidence"]
        confidence = _as_float_array(raw_confidence)
        with np.errstate(invalid="ignore"):
            invalid_confidence = raw_confidence.notna().to_numpy(dtype=bool) & ~(
                np.isfinite(confidence) & (confidence >= MIN_CONFIDENCE) & (confidence <= MAX_CONFIDENCE)
            )

        reasons = {
            ANSWER_MISSING_IS_CORRECT: ~valid_correct,
            ANSWER_MISSING_RESPONSE_TIME: missing_time,
            ANSWER_NEGATIVE_RESPONSE_TIME: negative_time,
            ANSWER_INVALID_CONFIDENCE: invalid_confidence,
        }
        invalid = np.zeros(len(answers), dtype=bool)
        for mask in reasons.values():
            invalid |= mask
        self.invalid = invalid & self.matched
        self.valid = ~invalid & self.matched
        self.invalid_by_reason = {name: int((mask & self.matched).sum()) for name, mask in reasons.items()}
        self.codes = codes
        self.is_correct = is_correct
        self.time_ms = time_ms
        self.confidence = confidence


# --------------------------------------------------------------------------- scoring


def _join_reasons(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Reason strings in ``REJECTION_REASONS`` order, vectorised over challenges."""
    reason = np.full(n, "", dtype=object)
    for name in REJECTION_REASONS:
        mask = masks[name]
        if not mask.any():
            continue
        empty = reason == ""
        reason = np.where(mask & empty, name, np.where(mask, reason + REASON_SEPARATOR + name, reason))
    return reason


def score_candidates(
    challenges: pd.DataFrame,
    answers: pd.DataFrame,
    judge_scores: Mapping[str, float],
    criteria: GoldStandardCriteria,
) -> tuple[pd.DataFrame, PromotionSummary]:
    """Every challenge of a skill, its answers aggregated, and whether it may be promoted.

    ``challenges`` needs ``CHALLENGE_INPUT_COLUMNS``, ``answers`` ``ANSWER_INPUT_COLUMNS`` (a
    missing column raises ``ValueError``: that is a broken store, not a bad row). Bad rows never
    raise: they are rejected with their reason. Returns ``(frame, summary)``; see the module doc.
    """
    _require_columns(challenges, CHALLENGE_INPUT_COLUMNS, "challenges")
    _require_columns(answers, ANSWER_INPUT_COLUMNS, "answers")
    table = _validate_challenges(challenges)
    n = len(table)
    ans = _Answers(answers, table["challenge_id"])

    # Per-answer scores for the valid answers, using their challenge's difficulty.
    codes = ans.codes[ans.valid]
    difficulty = table["difficulty"].to_numpy(dtype=float, na_value=np.nan)
    answer_difficulty = difficulty[codes] if n else np.empty(0)
    time_scores = response_time_score(ans.time_ms[ans.valid], answer_difficulty)
    confidences = confidence_score(ans.confidence[ans.valid])

    answer_count = np.bincount(codes, minlength=n).astype(np.int64)
    answers_any = np.bincount(ans.codes[ans.matched], minlength=n)
    correct = np.bincount(codes, weights=ans.is_correct[ans.valid], minlength=n)
    has_answers = answer_count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        correct_rate = np.where(has_answers, correct / np.maximum(answer_count, 1), 0.0)
    group = pd.Series(codes, dtype=np.int64)
    median_time = pd.Series(time_scores).groupby(group).median().reindex(range(n)).to_numpy(dtype=float)
    mean_confidence = pd.Series(confidences).groupby(group).mean().reindex(range(n)).to_numpy(dtype=float)

    judge_lookup = {str(k): v for k, v in judge_scores.items()}
    judge = pd.to_numeric(
        pd.Series([judge_lookup.get(cid) for cid in table["challenge_id"]], dtype=object), errors="coerce"
    ).to_numpy(dtype=float, na_value=np.nan)
    judge = np.where(np.isfinite(judge), judge, np.nan)

    tolerance = THRESHOLD_TOLERANCE
    no_valid_answers = (answer_count == 0) & (answers_any > 0)
    with np.errstate(invalid="ignore"):
        judge_in_range = (judge >= 0.0) & (judge <= 1.0)
        masks: dict[str, np.ndarray] = {
            REASON_MISSING_ID: table["_missing_id"].to_numpy(dtype=bool),
            REASON_DUPLICATE_ID: table["_duplicate_id"].to_numpy(dtype=bool),
            REASON_INVALID_DIFFICULTY: table["_invalid_difficulty"].to_numpy(dtype=bool),
            REASON_EMPTY_QUESTION: table["_empty_question"].to_numpy(dtype=bool),
            REASON_INVALID_OPTIONS: table["_invalid_options"].to_numpy(dtype=bool),
            REASON_INVALID_CORRECT_OPTION: table["_invalid_correct_option"].to_numpy(dtype=bool),
            REASON_NO_VALID_ANSWERS: no_valid_answers,
            REASON_TOO_FEW_ANSWERS: (answer_count < criteria.min_answers) & ~no_valid_answers,
            REASON_LOW_CORRECT_RATE: has_answers
            & criteria.require_correct_answer
            & (correct_rate < criteria.min_correct_rate - tolerance),
            # NaN (difficulty invalid) compares False: that challenge is already rejected for it.
            REASON_SLOW_RESPONSES: has_answers & (median_time < criteria.min_response_time_score - tolerance),
            REASON_NO_JUDGE_SCORE: np.isnan(judge),
            REASON_INVALID_JUDGE_SCORE: ~np.isnan(judge) & ~judge_in_range,
            REASON_LOW_JUDGE_SCORE: judge_in_range & (judge < criteria.min_judge_score - tolerance),
        }
    reason = _join_reasons(masks, n)

    frame = pd.DataFrame(
        {
            "challenge_id": table["challenge_id"],
            "difficulty": table["difficulty"],
            "question": table["question"],
            "options": table["options"],
            "correct_option": table["correct_option"],
            "explanation": table["explanation"],
            "answer_count": answer_count,
            "correct_rate": correct_rate.astype(float),
            "response_time_score": np.where(np.isnan(median_time), 0.0, median_time),
            "user_confidence": mean_confidence,
            "judge_composite_score": judge,
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
    )
    return frame, summary


def summarise(
    candidates: pd.DataFrame,
    answers_read: int,
    answers_invalid: int,
    *,
    challenges_read: int | None = None,
    answers_unmatched: int = 0,
    answers_invalid_by_reason: Mapping[str, int] | None = None,
) -> PromotionSummary:
    """Counts of a candidates frame (as returned by ``score_candidates`` or read back from storage).

    ``challenges_read`` defaults to the number of rows; reasons are counted from the ``reason``
    column, so a frame read back gives the same counts as the run that wrote it.
    """
    _require_columns(candidates, ("eligible", "reason"), "candidates")
    eligible = candidates["eligible"].astype(bool)
    tokens = candidates.loc[~eligible, "reason"].astype(str).str.split(REASON_SEPARATOR).explode()
    counted = tokens[tokens != ""].value_counts()
    by_reason = {name: int(counted.get(name, 0)) for name in REJECTION_REASONS}
    for name, count in counted.items():  # a reason from a newer vocabulary still shows up
        by_reason.setdefault(str(name), int(count))
    return PromotionSummary(
        challenges_read=len(candidates) if challenges_read is None else challenges_read,
        answers_read=answers_read,
        answers_invalid=answers_invalid,
        answers_unmatched=answers_unmatched,
        answers_invalid_by_reason=dict(answers_invalid_by_reason or {}),
        candidates=len(candidates),
        eligible=int(eligible.sum()),
        rejected=int((~eligible).sum()),
        rejected_by_reason=by_reason,
    )


def _plain(value: Any) -> Any:
    """numpy / pandas scalars to Python, NaN and NA to None, arrays to lists."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def candidates_from_frame(frame: pd.DataFrame, *, eligible_only: bool = False) -> list[Candidate]:
    """The frame's rows as ``Candidate`` models (NaN -> None), in the frame's order.

    A rejected row that cannot be a ``Candidate`` at all (e.g. difficulty 0 or "hard", a
    correct option that is not an integer) is left out: it is already counted with its reason in
    the frame and the summary, and it could never be promoted. An ELIGIBLE row that does not fit
    the model is a bug and raises ``ValueError`` naming the challenge.
    """
    _require_columns(frame, CANDIDATE_COLUMNS, "candidates")
    result: list[Candidate] = []
    for record in frame[list(CANDIDATE_COLUMNS)].to_dict("records"):
        row = {key: _plain(value) for key, value in record.items()}
        eligible = bool(row["eligible"])
        if eligible_only and not eligible:
            continue
        if row["options"] is None:
            row["options"] = []
        try:
            result.append(Candidate.model_validate(row))
        except ValidationError as exc:
            if eligible:
                error = exc.errors()[0]
                raise ValueError(
                    f"eligible challenge {row['challenge_id']!r} is not a valid Candidate: "
                    f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
                ) from exc
    return result
