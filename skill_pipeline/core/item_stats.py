"""Item analysis of real answers: which answers measure the item, and what they say about it.

Promotion and experiments are measurements (DESIGN.md, "Statistics: what the numbers must mean"):

- An answer given far under the expected time is a rapid guess, one far over it an idle answer
  (the user walked away): neither measures the item, so ``classify_answers`` gives each answer a
  reason (``""`` for a valid one) and the caller drops the flagged ones before any statistic.
- A correct rate from n answers carries its uncertainty: ``item_statistics`` reports the Wilson
  interval next to it, so a threshold is compared with the lower bound, not the point estimate.
- The speed that matters is that of CORRECT answers: a fast wrong answer says nothing about how
  long the item takes to solve, so the response-time score is the median over correct answers.
- Discrimination (classical test theory) is the corrected item–total point-biserial correlation:
  an item's correctness against the user's score on the REST of the skill, so the item is not
  correlated with itself. ≥ 0.30 good, 0.20–0.29 fair, < 0.20 revise, negative: check the key.

Everything is vectorised (factorised codes, ``np.bincount``, pandas ``groupby``): 10⁶ answers of
~10⁵ users on ~1000 challenges take seconds and a few hundred MB, without a Python loop per answer.

The expected time and the per-answer score are ``core.response_time``'s (10 s at difficulty 1,
5.5 s more per level; the score falls by half a point per multiple of the expected time past it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from skill_pipeline.core.response_time import expected_response_ms, time_score

OPTION_COUNT = 4

# Why an answer is not a measurement of its item. One reason per answer, the first that applies in
# this order (a missing time cannot be judged fast or slow; without a difficulty there is no
# expected time). Fixed strings without numbers, so "dropped by reason" is a count of values.
REASON_MISSING_CORRECTNESS = "missing is_correct"
REASON_MISSING_RESPONSE_TIME = "missing response time"
REASON_NO_DIFFICULTY = "no difficulty for challenge"
REASON_RAPID_GUESS = "rapid guess"
REASON_IDLE = "idle"
HYGIENE_REASONS: tuple[str, ...] = (
    REASON_MISSING_CORRECTNESS,
    REASON_MISSING_RESPONSE_TIME,
    REASON_NO_DIFFICULTY,
    REASON_RAPID_GUESS,
    REASON_IDLE,
)
VALID = ""

ITEM_STATISTICS_COLUMNS: tuple[str, ...] = (
    "challenge_id",
    "skill_id",
    "n",
    "n_correct",
    "correct_rate",
    "correct_rate_low",
    "correct_rate_high",
    "response_time_score",
    "mean_confidence",
    "discrimination",
    "discrimination_n",
    "n_with_choice",
    *(f"option_{k}_share" for k in range(OPTION_COUNT)),
    "rare_distractors",
    "key_mismatches",
)


class AnswerHygieneRules(BaseModel):
    """When an answer is too fast or too slow to be a measurement. Times are in MILLISECONDS, like
    the app's ``response_time`` column; the expected time is ``10 s + (difficulty − 1) × 5.5 s``."""

    model_config = ConfigDict(frozen=True)

    rapid_guess_fraction: float | None = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="An answer faster than this fraction of the expected time (10 s + (difficulty − 1) × 5.5 s, "
        "compared in milliseconds) is a rapid guess. None switches the relative rule off.",
    )
    rapid_guess_floor_ms: float | None = Field(
        default=1000.0,
        ge=0.0,
        description="An answer faster than this many milliseconds is a rapid guess whatever the difficulty "
        "(nobody reads a question and four options in under a second). None switches the floor off.",
    )
    idle_multiple: float | None = Field(
        default=10.0,
        gt=1.0,
        description="An answer slower than this multiple of the expected time (in milliseconds) is idle: "
        "the user left the question open. None switches the relative rule off.",
    )
    idle_cap_ms: float | None = Field(
        default=300_000.0,
        gt=0.0,
        description="An answer slower than this many milliseconds (default 300000 ms = 5 minutes) is idle "
        "whatever the difficulty. None switches the cap off.",
    )


class ItemStatisticsParameters(BaseModel):
    """Thresholds of the item analysis other than the confidence level."""

    model_config = ConfigDict(frozen=True)

    min_users_for_discrimination: int = Field(
        default=20,
        ge=3,
        description="Fewest users with a rest score (answers on other items of the skill) for a discrimination; "
        "below it the correlation is noise and the column is NaN.",
    )
    rare_distractor_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="A wrong option chosen by fewer than this share of the answers that record a choice "
        "does not distract anyone (counted in rare_distractors).",
    )


# --------------------------------------------------------------------------- helpers


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def index_codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value's stripped string in ``index`` (-1 when absent).

    Factorise first and stringify only the distinct values: 10⁶ answers on 1000 challenges cost
    one hash pass, not 10⁶ Python ``str`` calls.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = pd.Index([str(v).strip() for v in uniques], dtype=object)
    lookup = index.get_indexer(keys) if len(keys) else np.empty(0, dtype=np.intp)
    return np.where(codes >= 0, lookup[np.maximum(codes, 0)] if len(lookup) else -1, -1)


def _correctness(values: pd.Series) -> np.ndarray:
    """``is_correct`` as 0.0 / 1.0, NaN when it is not a boolean (or 0 / 1)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=float, na_value=np.nan)
    as_object = values.astype(object)
    readable = as_object.isin([True, False]).to_numpy(dtype=bool)  # 1 and 0 compare equal to True / False
    result = np.full(len(values), np.nan)
    result[readable] = as_object.to_numpy()[readable].astype(float)
    return result


def _difficulty_series(difficulty_by_challenge: Mapping[Any, Any] | pd.Series) -> pd.Series:
    series = difficulty_by_challenge if isinstance(difficulty_by_challenge, pd.Series) else pd.Series(
        dict(difficulty_by_challenge), dtype=object
    )
    series = series[~pd.Index([str(k).strip() for k in series.index]).duplicated(keep="first")]
    return pd.Series(_numbers(series), index=pd.Index([str(k).strip() for k in series.index], dtype=object))


# --------------------------------------------------------------------------- answer hygiene


def classify_answers(
    answers: pd.DataFrame,
    difficulty_by_challenge: Mapping[Any, Any] | pd.Series,
    rules: AnswerHygieneRules | None = None,
) -> pd.Series:
    """Why each answer is not a measurement of its item (``""`` when it is one).

    ``answers`` needs ``challenge_id``, ``is_correct`` and ``response_time`` (milliseconds);
    ``difficulty_by_challenge`` maps challenge id to its written difficulty 1–10 (a mapping or a
    Series indexed by id, e.g. ``challenges.set_index("id")["difficulty"]``). The result is a
    string Series named ``hygiene_reason`` on ``answers``' index, one reason of ``HYGIENE_REASONS``
    per flagged answer (the first that applies, in that order). Keep ``reasons == ""``;
    ``hygiene_counts`` gives the counts for metadata.
    """
    rules = rules or AnswerHygieneRules()
    missing = [c for c in ("challenge_id", "is_correct", "response_time") if c not in answers.columns]
    if missing:
        raise ValueError(f"answers frame lacks columns {missing}; it has {list(answers.columns)}")
    difficulty = _difficulty_series(difficulty_by_challenge)
    codes = index_codes(answers["challenge_id"], difficulty.index)
    known = difficulty.to_numpy(dtype=float)
    expected = expected_response_ms(np.where(codes >= 0, known[np.maximum(codes, 0)] if len(known) else np.nan, np.nan))
    time_ms = _numbers(answers["response_time"])
    correct = _correctness(answers["is_correct"])

    with np.errstate(invalid="ignore"):
        rapid = np.zeros(len(answers), dtype=bool)
        if rules.rapid_guess_fraction is not None:
            rapid |= time_ms < rules.rapid_guess_fraction * expected
        if rules.rapid_guess_floor_ms is not None:
            rapid |= time_ms < rules.rapid_guess_floor_ms
        idle = np.zeros(len(answers), dtype=bool)
        if rules.idle_multiple is not None:
            idle |= time_ms > rules.idle_multiple * expected
        if rules.idle_cap_ms is not None:
            idle |= time_ms > rules.idle_cap_ms
    masks = (
        (REASON_MISSING_CORRECTNESS, np.isnan(correct)),
        (REASON_MISSING_RESPONSE_TIME, ~np.isfinite(time_ms) | (np.nan_to_num(time_ms, nan=0.0) < 0)),
        (REASON_NO_DIFFICULTY, np.isnan(expected)),
        (REASON_RAPID_GUESS, rapid),
        (REASON_IDLE, idle),
    )
    reason = np.full(len(answers), VALID, dtype=object)
    for name, mask in reversed(masks):  # the earliest reason that applies is written last
        reason[mask] = name
    return pd.Series(reason, index=answers.index, name="hygiene_reason", dtype=object)


def hygiene_counts(reasons: pd.Series) -> dict[str, int]:
    """Answers per reason, every reason of ``HYGIENE_REASONS`` present (zeros included) plus ``"valid"``."""
    counted = pd.Series(reasons, dtype=object).value_counts()
    result = {"valid": int(counted.get(VALID, 0))}
    result.update({name: int(counted.get(name, 0)) for name in HYGIENE_REASONS})
    return result


# --------------------------------------------------------------------------- item statistics


def wilson_interval(successes: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval per element (statsmodels); NaN where ``n == 0``."""
    from statsmodels.stats.proportion import proportion_confint  # loaded where it is used, not at import

    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    low, high = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    has = n > 0
    if has.any():
        low[has], high[has] = proportion_confint(successes[has], n[has], alpha=1.0 - confidence, method="wilson")
    return low, high


def _rest_score_correlation(
    item: np.ndarray, user: np.ndarray, correct: np.ndarray, skill_of_item: np.ndarray, n_items: int, min_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected item–total point-biserial correlation per item, and the users it is computed over.

    Answers collapse first to one observation per (user, item): the user's proportion correct on
    the item (0 or 1 for a single attempt), so a user answering twice is not counted twice. The
    rest score of a (user, item) pair is the mean of the user's other pairs in the item's skill;
    users with no other item of the skill have no rest score and are left out. Correlation by
    centred sums per item (two passes of ``bincount``), NaN below ``min_users`` or at zero variance.
    """
    r = np.full(n_items, np.nan)
    counts = np.zeros(n_items, dtype=np.int64)
    if len(item) == 0:
        return r, counts
    pair_codes, pair_keys = pd.factorize(user.astype(np.int64) * n_items + item, sort=False)
    pair_n = np.bincount(pair_codes)
    pair_score = np.bincount(pair_codes, weights=correct) / pair_n
    pair_item = (pair_keys % n_items).astype(np.intp)
    pair_user = pair_keys // n_items
    n_skills = int(skill_of_item.max()) + 1
    us_codes, _ = pd.factorize(pair_user * n_skills + skill_of_item[pair_item], sort=False)
    total_items = np.bincount(us_codes)
    total_score = np.bincount(us_codes, weights=pair_score)
    rest_n = total_items[us_codes] - 1
    has_rest = rest_n > 0
    x = pair_score[has_rest]
    y = (total_score[us_codes] - pair_score)[has_rest] / rest_n[has_rest]
    g = pair_item[has_rest]
    counts = np.bincount(g, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - (np.bincount(g, weights=x, minlength=n_items) / counts)[g]
        dy = y - (np.bincount(g, weights=y, minlength=n_items) / counts)[g]
        sxy = np.bincount(g, weights=dx * dy, minlength=n_items)
        sxx = np.bincount(g, weights=dx * dx, minlength=n_items)
        syy = np.bincount(g, weights=dy * dy, minlength=n_items)
        # Zero variance up to float noise (everyone right, or every rest score equal) has no correlation.
        ok = (counts >= min_users) & (sxx > 1e-12 * np.maximum(counts, 1)) & (syy > 1e-12 * np.maximum(counts, 1))
        r = np.where(ok, sxy / np.sqrt(sxx * syy), np.nan)
    return np.clip(r, -1.0, 1.0), counts


def _distractor_use(
    item: np.ndarray, chosen: np.ndarray, correct_option: np.ndarray, n_items: int, rare_share: float
) -> dict[str, np.ndarray]:
    """Share of the answers recording a choice per option, and wrong options chosen by < ``rare_share``."""
    with np.errstate(invalid="ignore"):
        known = np.isfinite(chosen) & (chosen == np.floor(chosen)) & (chosen >= 0) & (chosen < OPTION_COUNT)
    cells = item[known] * OPTION_COUNT + chosen[known].astype(np.int64)
    table = np.bincount(cells, minlength=n_items * OPTION_COUNT).reshape(n_items, OPTION_COUNT)
    n_choice = table.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(n_choice[:, None] > 0, table / n_choice[:, None], np.nan)
    key_known = np.isfinite(correct_option) & (correct_option >= 0) & (correct_option < OPTION_COUNT)
    is_key = key_known[:, None] & (np.arange(OPTION_COUNT)[None, :] == np.nan_to_num(correct_option)[:, None])
    rare = ((shares < rare_share) & ~is_key).sum(axis=1).astype(float)
    out = {"n_with_choice": n_choice.astype(np.int64)}
    out.update({f"option_{k}_share": shares[:, k] for k in range(OPTION_COUNT)})
    out["rare_distractors"] = np.where(key_known & (n_choice > 0), rare, np.nan)
    return out


def item_statistics(
    challenges: pd.DataFrame,
    valid_answers: pd.DataFrame,
    *,
    confidence: float = 0.95,
    parameters: ItemStatisticsParameters | None = None,
) -> pd.DataFrame:
    """Classical item analysis, one row per distinct challenge id (first row kept), sorted by id.

    ``challenges`` needs ``id`` and ``difficulty``; ``skill_id`` groups items for the rest score
    (absent: all challenges are one skill) and ``correct_option`` identifies the distractors.
    ``valid_answers`` are answers that passed ``classify_answers`` (a non-boolean ``is_correct``
    raises ``ValueError``): ``challenge_id``, ``is_correct``, ``response_time`` (ms), and
    optionally ``confidence`` (1–5), ``user_key`` (for discrimination) and ``chosen_option``
    (0–3, for distractors; missing values are ignored). Answers of unknown challenges are ignored.

    Columns (``ITEM_STATISTICS_COLUMNS``): ``n``, ``n_correct``, ``correct_rate`` and its Wilson
    interval ``correct_rate_low`` / ``correct_rate_high`` at ``confidence``;
    ``response_time_score``: median per-answer score over CORRECT answers (NaN if none);
    ``mean_confidence`` on the 1–5 scale; ``discrimination`` and ``discrimination_n`` (users with a
    rest score); ``n_with_choice``, ``option_k_share`` (the key's share included, so the shares of
    a row sum to 1), ``rare_distractors`` (wrong options below the rare share; NaN without choices
    or key) and ``key_mismatches`` (answers whose ``is_correct`` disagrees with ``chosen_option ==
    correct_option``: a wrong key or a logging bug). Unanswered challenges have ``n == 0`` and NaN.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, not {confidence}")
    params = parameters or ItemStatisticsParameters()
    for frame, columns, what in (
        (challenges, ("id", "difficulty"), "challenges"),
        (valid_answers, ("challenge_id", "is_correct", "response_time"), "answers"),
    ):
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ValueError(f"{what} frame lacks columns {absent}; it has {list(frame.columns)}")

    ids = pd.Series([str(v).strip() for v in challenges["id"].tolist()], dtype=object)
    table = challenges.reset_index(drop=True).assign(challenge_id=ids)
    table = table[~ids.duplicated(keep="first")].sort_values("challenge_id", kind="stable").reset_index(drop=True)
    n_items = len(table)
    index = pd.Index(table["challenge_id"], dtype=object)
    skill = table["skill_id"] if "skill_id" in table.columns else pd.Series([None] * n_items, dtype=object)
    skill_of_item = pd.factorize(skill.astype(object).where(skill.notna(), "<no skill>"))[0].astype(np.int64)

    codes = index_codes(valid_answers["challenge_id"], index)
    matched = codes >= 0
    item = codes[matched].astype(np.intp)
    correct = _correctness(valid_answers["is_correct"])[matched]
    if np.isnan(correct).any():
        raise ValueError("valid_answers has answers without a boolean is_correct: filter them with classify_answers")
    time_ms = _numbers(valid_answers["response_time"])[matched]
    difficulty = _numbers(table["difficulty"])

    n = np.bincount(item, minlength=n_items).astype(np.int64)
    n_correct = np.bincount(item, weights=correct, minlength=n_items).round().astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, n_correct / np.maximum(n, 1), np.nan)
    low, high = wilson_interval(n_correct, n, confidence)

    is_right = correct == 1.0
    scores = time_score(time_ms[is_right], expected_response_ms(difficulty)[item[is_right]])
    median_time = pd.Series(scores).groupby(item[is_right]).median().reindex(range(n_items)).to_numpy(dtype=float)
    if "confidence" in valid_answers.columns:
        conf = _numbers(valid_answers["confidence"])[matched]
        mean_conf = pd.Series(conf).groupby(item).mean().reindex(range(n_items)).to_numpy(dtype=float)
    else:
        mean_conf = np.full(n_items, np.nan)

    discrimination = np.full(n_items, np.nan)
    discrimination_n = np.zeros(n_items, dtype=np.int64)
    if "user_key" in valid_answers.columns and n_items:
        user_codes = pd.factorize(valid_answers["user_key"])[0][matched]
        keyed = user_codes >= 0  # an answer without a user key has no rest score
        discrimination, discrimination_n = _rest_score_correlation(
            item[keyed], user_codes[keyed], correct[keyed], skill_of_item, n_items, params.min_users_for_discrimination
        )

    key = _numbers(table["correct_option"]) if "correct_option" in table.columns else np.full(n_items, np.nan)
    if "chosen_option" in valid_answers.columns:
        chosen = _numbers(valid_answers["chosen_option"])[matched]
        distractors = _distractor_use(item, chosen, key, n_items, params.rare_distractor_share)
        with np.errstate(invalid="ignore"):
            checkable = np.isfinite(chosen) & np.isfinite(key[item])
            mismatch = checkable & ((chosen == key[item]) != is_right)
        key_mismatches = np.bincount(item[mismatch], minlength=n_items).astype(np.int64)
    else:
        distractors = {"n_with_choice": np.zeros(n_items, dtype=np.int64), "rare_distractors": np.full(n_items, np.nan)}
        distractors.update({f"option_{k}_share": np.full(n_items, np.nan) for k in range(OPTION_COUNT)})
        key_mismatches = np.zeros(n_items, dtype=np.int64)

    result = pd.DataFrame(
        {
            "challenge_id": table["challenge_id"].astype(object),
            "skill_id": skill.to_numpy(dtype=object),
            "n": n,
            "n_correct": n_correct,
            "correct_rate": rate,
            "correct_rate_low": low,
            "correct_rate_high": high,
            "response_time_score": median_time,
            "mean_confidence": mean_conf,
            "discrimination": discrimination,
            "discrimination_n": discrimination_n,
            **distractors,
            "key_mismatches": key_mismatches,
        }
    )
    return result[list(ITEM_STATISTICS_COLUMNS)]
