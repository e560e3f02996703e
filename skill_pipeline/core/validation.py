"""Row validation of the app's challenges and answers: pandera ``DataFrameModel``s whose failure
cases are the rejection reasons.

Each check is named after the reason it gives (``REASON_*`` / ``ANSWER_*``), so a lazy validation
(``lazy=True``: every check runs, every failing row is collected) turns into one boolean mask per
reason: ``challenge_reasons`` / ``answer_reasons``. A row may fail several checks and then carries
every reason. Checks run on object columns with ``ignore_na=False``: a null is judged by the check
(a null question is "empty question"), never skipped, and never coerced into something valid
(``True`` is not difficulty 1, ``"3"`` is not an option index).

A failure that is not about a row (a column missing, a check that crashed) has no row index: that
is a broken store, and it raises ``ValueError`` instead of rejecting every challenge.

pandera costs ~0.4 s to import; ``core.promotion`` imports this module where it validates, so
loading the code location does not pay for it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from skill_pipeline.core.promotion_reasons import (
    ANSWER_INVALID_CONFIDENCE,
    ANSWER_MISSING_IS_CORRECT,
    ANSWER_MISSING_RESPONSE_TIME,
    ANSWER_NEGATIVE_RESPONSE_TIME,
    ANSWER_REJECTION_REASONS as ANSWER_ROW_REASONS,
    INVALID_ROW_REASONS,
    REASON_DUPLICATE_ID,
    REASON_EMPTY_QUESTION,
    REASON_INVALID_CORRECT_OPTION,
    REASON_INVALID_DIFFICULTY,
    REASON_INVALID_OPTIONS,
    REASON_MISSING_ID,
    REJECTION_REASONS,
)
from skill_pipeline.models import DIFFICULTY_LEVELS

OPTION_COUNT = 4
MIN_DIFFICULTY, MAX_DIFFICULTY = DIFFICULTY_LEVELS[0], DIFFICULTY_LEVELS[-1]
MIN_CONFIDENCE, MAX_CONFIDENCE = 1.0, 5.0

CHALLENGE_ROW_REASONS: tuple[str, ...] = tuple(r for r in REJECTION_REASONS if r in INVALID_ROW_REASONS)


# --------------------------------------------------------------------------- element predicates


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


def integral_numbers(values: pd.Series) -> np.ndarray:
    """Values as floats when they are integers (``3``, ``3.0``; not ``True`` or ``2.5``), else NaN."""
    if pd.api.types.is_bool_dtype(values.dtype):  # True is not difficulty 1
        return np.full(len(values), np.nan)
    as_object = values.astype(object)
    is_bool = as_object.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    numbers = pd.to_numeric(as_object.mask(is_bool), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(numbers) & (numbers == np.floor(numbers)) & (np.abs(numbers) < 1e15)
    return np.where(integral, numbers, np.nan)


def challenge_ids(values: pd.Series) -> pd.Series:
    """Ids as stripped strings, ``""`` for a missing one."""
    return pd.Series(
        ["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip() for v in values.tolist()],
        index=values.index, dtype=object,
    )


def _in_range(values: pd.Series, low: float, high: float) -> pd.Series:
    n = integral_numbers(values)
    with np.errstate(invalid="ignore"):
        return pd.Series((n >= low) & (n <= high), index=values.index)


def _numbers(values: pd.Series) -> np.ndarray:
    """Numbers as floats, NaN for anything else (a string like "slow" included)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


# --------------------------------------------------------------------------- schemas


class ChallengeRows(pa.DataFrameModel):
    """A challenge as promotion can use it. Check names are the rejection reasons."""

    id: object = pa.Field(nullable=True)
    difficulty: object = pa.Field(nullable=True)
    question: object = pa.Field(nullable=True)
    options_json: object = pa.Field(nullable=True)
    correct_option: object = pa.Field(nullable=True)

    class Config:
        strict = False  # skill_id, explanation and whatever else the store reads are not judged here
        coerce = False

    @pa.check("id", name=REASON_MISSING_ID, ignore_na=False)
    def _has_id(cls, ids: pd.Series) -> pd.Series:
        return challenge_ids(ids) != ""

    @pa.check("id", name=REASON_DUPLICATE_ID, ignore_na=False)
    def _unique_id(cls, ids: pd.Series) -> pd.Series:
        return ~challenge_ids(ids).duplicated(keep=False)

    @pa.check("difficulty", name=REASON_INVALID_DIFFICULTY, ignore_na=False)
    def _difficulty(cls, values: pd.Series) -> pd.Series:
        return _in_range(values, MIN_DIFFICULTY, MAX_DIFFICULTY)

    @pa.check("question", name=REASON_EMPTY_QUESTION, ignore_na=False)
    def _question(cls, values: pd.Series) -> pd.Series:
        return values.map(lambda q: isinstance(q, str) and bool(q.strip())).astype(bool)

    @pa.check("options_json", name=REASON_INVALID_OPTIONS, ignore_na=False)
    def _options(cls, values: pd.Series) -> pd.Series:
        return values.map(lambda v: parse_options(v) is not None).astype(bool)

    @pa.check("correct_option", name=REASON_INVALID_CORRECT_OPTION, ignore_na=False)
    def _correct_option(cls, values: pd.Series) -> pd.Series:
        return _in_range(values, 0, OPTION_COUNT - 1)


class AnswerRows(pa.DataFrameModel):
    """An answer that can be read at all (hygiene then decides whether it measures the item)."""

    challenge_id: object = pa.Field(nullable=True)
    is_correct: object = pa.Field(nullable=True)
    response_time: object = pa.Field(nullable=True)
    confidence: object = pa.Field(nullable=True)

    class Config:
        strict = False  # user_key, chosen_option, ids: read by the statistics, not judged here
        coerce = False

    @pa.check("is_correct", name=ANSWER_MISSING_IS_CORRECT, ignore_na=False)
    def _correctness(cls, values: pd.Series) -> pd.Series:
        return values.isin([True, False]).astype(bool)  # 1 and 0 compare equal to True and False

    @pa.check("response_time", name=ANSWER_MISSING_RESPONSE_TIME, ignore_na=False)
    def _has_time(cls, values: pd.Series) -> pd.Series:
        return pd.Series(np.isfinite(_numbers(values)), index=values.index)

    @pa.check("response_time", name=ANSWER_NEGATIVE_RESPONSE_TIME, ignore_na=False)
    def _time_not_negative(cls, values: pd.Series) -> pd.Series:
        ms = _numbers(values)
        return pd.Series(~(np.isfinite(ms) & (ms < 0)), index=values.index)

    @pa.check("confidence", name=ANSWER_INVALID_CONFIDENCE, ignore_na=False)
    def _confidence(cls, values: pd.Series) -> pd.Series:
        c = _numbers(values)
        with np.errstate(invalid="ignore"):
            ok = values.isna().to_numpy(dtype=bool) | (np.isfinite(c) & (c >= MIN_CONFIDENCE) & (c <= MAX_CONFIDENCE))
        return pd.Series(ok, index=values.index)


# --------------------------------------------------------------------------- failure cases to reasons


def failure_masks(
    frame: pd.DataFrame, model: type[pa.DataFrameModel], reasons: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """One boolean mask (by position) per reason, from a lazy validation's failure cases."""
    columns = list(model.to_schema().columns)
    # Object columns on a RangeIndex: pandas 3 would infer ``str`` from an object array of strings.
    rows = pd.DataFrame({c: pd.Series(frame[c].to_numpy(dtype=object), dtype=object) for c in columns})
    masks = {reason: np.zeros(len(rows), dtype=bool) for reason in reasons}
    try:
        model.validate(rows, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        broken = cases[~cases["check"].isin(reasons) | cases["index"].isna()]
        if len(broken):
            first = broken.iloc[0]
            raise ValueError(
                f"{model.__name__}: {first['check']} failed on column {first['column']!r} "
                f"({first['failure_case']!r}); the frame has columns {list(frame.columns)}"
            ) from None
        for reason, group in cases.groupby("check"):
            masks[str(reason)][group["index"].to_numpy(dtype=np.int64)] = True
    return masks


def challenge_reasons(challenges: pd.DataFrame) -> dict[str, np.ndarray]:
    """``CHALLENGE_ROW_REASONS`` → mask over ``challenges``' rows (by position)."""
    return failure_masks(challenges, ChallengeRows, CHALLENGE_ROW_REASONS)


def answer_reasons(answers: pd.DataFrame) -> dict[str, np.ndarray]:
    """``ANSWER_ROW_REASONS`` → mask over ``answers``' rows (by position)."""
    return failure_masks(answers, AnswerRows, ANSWER_ROW_REASONS)
