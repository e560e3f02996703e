"""The candidates frame after scoring: its counts (``summarise``), the rejected challenges as a
table, the judge-score contract, and its rows as ``Candidate`` models for composition."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from skill_pipeline.core.promotion_duplicates import REASON_NEAR_DUPLICATE_PREFIX
from skill_pipeline.core.promotion_reasons import REASON_NEAR_DUPLICATE, REASON_SEPARATOR, REJECTION_REASONS
from skill_pipeline.models import Candidate

CANDIDATE_COLUMNS: tuple[str, ...] = tuple(Candidate.model_fields)


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


class PromotionSummary(BaseModel):
    """Counts for the asset's metadata.

    Answers partition as ``answers_read = valid + answers_invalid + answers_excluded +
    answers_unmatched``. ``rejected_by_reason`` holds every reason of ``REJECTION_REASONS`` (zeros
    included, so the metadata has the same keys every run); a challenge failing several rules
    counts under each.
    """

    challenges_read: int = Field(ge=0, description="challenge rows read (before de-duplicating ids)")
    answers_read: int = Field(ge=0)
    answers_invalid: int = Field(ge=0, description="malformed answers of known challenges")
    answers_excluded: int = Field(default=0, ge=0, description="well-formed answers that are rapid guesses or idle")
    answers_unmatched: int = Field(default=0, ge=0, description="answers of challenges not in the frame")
    answers_invalid_by_reason: dict[str, int] = Field(default_factory=dict)
    answers_excluded_by_reason: dict[str, int] = Field(default_factory=dict)
    candidates: int = Field(ge=0, description="rows of the candidates frame (distinct challenge ids)")
    eligible: int = Field(ge=0)
    rejected: int = Field(ge=0)
    rejected_by_reason: dict[str, int]
    calibration_by_status: dict[str, int] = Field(default_factory=dict)
    discrimination_by_status: dict[str, int] = Field(default_factory=dict)


def summarise(
    candidates: pd.DataFrame,
    answers_read: int,
    answers_invalid: int,
    *,
    challenges_read: int | None = None,
    answers_unmatched: int = 0,
    answers_invalid_by_reason: Mapping[str, int] | None = None,
    answers_excluded_by_reason: Mapping[str, int] | None = None,
) -> PromotionSummary:
    """Counts of a candidates frame (as returned by ``score_candidates`` or read back from storage).

    ``challenges_read`` defaults to the number of rows; reasons and statuses are counted from the
    frame's columns, so a frame read back gives the same counts as the run that wrote it.
    """
    _require_columns(candidates, ("eligible", "reason"), "candidates")
    eligible = candidates["eligible"].astype(bool)
    tokens = candidates.loc[~eligible, "reason"].astype(str).str.split(REASON_SEPARATOR).explode()
    tokens = tokens.where(~tokens.str.startswith(REASON_NEAR_DUPLICATE_PREFIX, na=False), REASON_NEAR_DUPLICATE)
    counted = tokens[tokens != ""].value_counts()
    by_reason = {name: int(counted.get(name, 0)) for name in REJECTION_REASONS}
    for name, count in counted.items():  # a reason from a newer vocabulary still shows up
        by_reason.setdefault(str(name), int(count))

    def statuses(column: str) -> dict[str, int]:
        if column not in candidates.columns:
            return {}
        return {str(k): int(v) for k, v in candidates[column].astype(str).value_counts().sort_index().items()}

    excluded = dict(answers_excluded_by_reason or {})
    return PromotionSummary(
        challenges_read=len(candidates) if challenges_read is None else challenges_read,
        answers_read=answers_read,
        answers_invalid=answers_invalid,
        answers_excluded=sum(excluded.values()),
        answers_unmatched=answers_unmatched,
        answers_invalid_by_reason=dict(answers_invalid_by_reason or {}),
        answers_excluded_by_reason=excluded,
        candidates=len(candidates),
        eligible=int(eligible.sum()),
        rejected=int((~eligible).sum()),
        rejected_by_reason=by_reason,
        calibration_by_status=statuses("calibration_status"),
        discrimination_by_status=statuses("discrimination_status"),
    )


REJECTION_TABLE_COLUMNS: tuple[str, ...] = (
    "challenge_id", "difficulty", "written_difficulty", "n_valid", "correct_rate", "wilson_low",
    "response_time_score", "discrimination", "calibrated_level", "judge_composite_score", "reason",
)


def rejection_table(candidates: pd.DataFrame, max_rows: int = 50) -> pd.DataFrame:
    """The rejected challenges with their figures and every reason, most answered first, capped."""
    rejected = candidates.loc[~candidates["eligible"].astype(bool), list(REJECTION_TABLE_COLUMNS)]
    rejected = rejected.sort_values(["n_valid", "challenge_id"], ascending=[False, True], kind="stable")
    return rejected.head(max_rows).round(3).reset_index(drop=True)


def judge_contract_verdict(candidates: pd.DataFrame, project: str, score_name: str) -> tuple[bool, str]:
    """(passed, detail) of the judge-score contract: challenges with valid answers exist and none has a
    judge score means the judge's traces are not where the pipeline looks (project, score name)."""
    answered = candidates["n_valid"] > 0 if "n_valid" in candidates.columns else candidates["answer_count"] > 0
    scored = candidates["judge_composite_score"].notna()
    if not answered.any():
        return True, "no challenge has valid answers yet: nothing for the judge to have scored"
    if (answered & scored).any():
        return True, f"{int((answered & scored).sum())} of {int(answered.sum())} answered challenges have a judge score"
    return False, (
        f"none of the {int(answered.sum())} challenges with valid answers has a judge score: no trace in project "
        f"{project!r} with metadata.challenge_id and a feedback score named {score_name!r}. Check OPIK_PROJECT_NAME "
        "and OPIK_JUDGE_SCORE_NAME against where the app's judge records its scores."
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
    the model is a bug and raises ``ValueError`` naming the challenge. Columns a frame written by
    an older run lacks take ``Candidate``'s defaults.
    """
    _require_columns(frame, CANDIDATE_COLUMNS[:6] + ("eligible", "reason"), "candidates")
    result: list[Candidate] = []
    present = [c for c in CANDIDATE_COLUMNS if c in frame.columns]
    for record in frame[present].to_dict("records"):
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
