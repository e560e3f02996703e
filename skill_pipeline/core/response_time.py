"""How long an answer should take, and the score of one answer's time: the one place of the formula.

The seed's expectation: 10 s at difficulty 1 and 5.5 s more per level (59.5 s at difficulty 10).
An answer within the expected time scores 1.0; past it the score falls by half a point per
multiple of the expected time, reaching 0 at three times it. Times are MILLISECONDS, like the app's
``response_time`` column. Used by the answer hygiene (rapid-guess and idle rules are fractions and
multiples of the expected time) and by the response-time score of ``core.item_stats``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

BASE_EXPECTED_SECONDS = 10.0
SECONDS_PER_DIFFICULTY = 5.5
SLOWNESS_PENALTY = 0.5
MIN_DIFFICULTY, MAX_DIFFICULTY = 1, 10


def as_float_array(values: Any) -> np.ndarray:
    """Anything array-like (or a scalar) as floats; what is not a number becomes NaN."""
    if isinstance(values, pd.Series | pd.Index):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(float)
    array = np.asarray(values, dtype=object)
    flat = pd.to_numeric(pd.Series(array.ravel()), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return flat.reshape(array.shape)


def _wrap(result: np.ndarray, like: Any) -> Any:
    """Give results the shape of the input: a Series for a Series, a float for a scalar."""
    if isinstance(like, pd.Series):
        return pd.Series(result, index=like.index, dtype=float)
    if np.ndim(like) == 0:
        return float(result.reshape(-1)[0])
    return result


def expected_response_ms(difficulty: Any) -> np.ndarray:
    """Milliseconds a competent answer should take at ``difficulty`` (NaN unless an integer 1–10), as an array."""
    d = as_float_array(difficulty)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d == np.floor(d)) & (d >= MIN_DIFFICULTY) & (d <= MAX_DIFFICULTY)
    return np.where(valid, 1000.0 * (BASE_EXPECTED_SECONDS + (d - 1.0) * SECONDS_PER_DIFFICULTY), np.nan)


def expected_response_seconds(difficulty: Any) -> Any:
    """Seconds a competent answer should take at ``difficulty``, shaped like the input."""
    return _wrap(expected_response_ms(difficulty) / 1000.0, difficulty)


def time_score(time_ms: np.ndarray, expected_ms: np.ndarray) -> np.ndarray:
    """Per-answer score from aligned arrays: 1 up to the expected time, then ``max(0, 1 − (ratio − 1) × 0.5)``;
    NaN for a missing, non-finite or negative time or a missing expected time."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = time_ms / expected_ms
        score = np.where(ratio <= 1.0, 1.0, np.maximum(0.0, 1.0 - (ratio - 1.0) * SLOWNESS_PENALTY))
        return np.where(np.isfinite(ratio) & (time_ms >= 0), score, np.nan)


def response_time_score(response_time_ms: Any, difficulty: Any) -> Any:
    """``time_score`` for any input shape: Series are matched by position and the result carries
    ``response_time_ms``'s index; a scalar gives a float. Unlike the seed, a missing time gives NaN
    rather than a default of 30 s: the caller decides what to drop."""
    ms = as_float_array(response_time_ms)
    d = as_float_array(difficulty)
    if ms.shape != d.shape and d.ndim and ms.ndim:
        raise ValueError(f"response_time_ms has {ms.shape[0]} values but difficulty has {d.shape[0]}")
    return _wrap(time_score(ms, expected_response_ms(d)), response_time_ms)
