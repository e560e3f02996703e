"""Near-duplicate questions: a reworded copy of an item is not a new item.

Why: a dataset with the same question twice (words reordered, filler added) counts one item's
result twice, narrowing the error bars on nothing; and generating an item that is already live
wastes a slot. The measure is rapidfuzz's token-set ratio (0–100) on ``default_process``-ed text
(lowercase, non-alphanumerics to blanks, trimmed): it ignores word order and repeated words, and
scores the shared words against each side, so "Which keyword defines a function in Python?" and
"Which Python keyword defines a function?" score 100, "What does the GIL in CPython prevent?" and
the same with "Choose the best answer." appended too, while two questions on different topics
score about 40. Scores come from ``rapidfuzz.process.cdist`` (C++, all pairs, one
worker so the pipeline's two cores stay shared), computed in row blocks so the matrix held in
memory stays bounded (``BLOCK_ROWS`` × the other side).

Known limits of the token-set ratio (measured, rapidfuzz 3.14): when the words of one text are a
subset of the other's it scores 100, so a short question ("What is Python?") matches any longer one
containing its words; it ignores order, so "print(2 ** 3)" and "print(3 ** 2)" score 100; and two
short questions differing in one word ("defines a function" / "defines a class") score ≈ 92. A
rewording that adds several words can fall just under 90 ("In Python, which keyword is used to
define a function?" scores 89.5 against the first example). Compare question AND options text,
which tells such pairs apart, and treat a rejection as "look at it", not as proof.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz, process, utils

DEFAULT_THRESHOLD = 90.0
BLOCK_ROWS = 1024

PAIR_COLUMNS: tuple[str, ...] = ("i", "j", "score")
REJECTED_COLUMNS: tuple[str, ...] = (
    "candidate_index",
    "candidate_text",
    "duplicate_of",
    "duplicate_index",
    "duplicate_text",
    "score",
)
DUPLICATES_EXISTING = "existing"
DUPLICATES_CANDIDATE = "candidate"


class NearDuplicateRules(BaseModel):
    """When two texts are one item."""

    model_config = ConfigDict(frozen=True)

    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        ge=0.0,
        le=100.0,
        description="Token-set ratio (0–100, rapidfuzz, on lowercased text without punctuation) at or above which "
        "two questions are near duplicates.",
    )


def _texts(values: Sequence[str]) -> list[str]:
    """Texts as strings (None / NaN → "", which matches nothing: rapidfuzz scores an empty text 0)."""
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def _scores(queries: list[str], choices: list[str], threshold: float) -> np.ndarray:
    """The queries × choices score matrix, scores under ``threshold`` zeroed by the cutoff."""
    return process.cdist(
        queries,
        choices,
        scorer=fuzz.token_set_ratio,
        processor=utils.default_process,
        score_cutoff=threshold,
        dtype=np.float32,
        workers=1,
    )


def _blocks(queries: list[str], choices: list[str], threshold: float):
    """Yield ``(row_offset, scores)`` for row blocks of the query × choice score matrix."""
    for start in range(0, len(queries), BLOCK_ROWS):
        yield start, _scores(queries[start : start + BLOCK_ROWS], choices, threshold)


def _threshold(threshold: float) -> float:
    return NearDuplicateRules(threshold=threshold).threshold


def near_duplicate_pairs(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Every pair ``i < j`` of ``texts`` scoring at least ``threshold``, with its score.

    Columns ``PAIR_COLUMNS`` (``i``, ``j`` positions in ``texts``, ``score`` 0–100), sorted by
    ``(i, j)``. Identical texts score 100; an empty text matches nothing.
    """
    threshold = _threshold(threshold)
    values = _texts(texts)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    for start in range(0, len(values), BLOCK_ROWS):
        # Only the upper triangle is needed: a block of rows against the texts from its first row on.
        scores = _scores(values[start : start + BLOCK_ROWS], values[start:], threshold)
        rows, cols = np.nonzero(scores >= max(threshold, 1e-9))  # the cutoff zeroed what is below
        upper = cols > rows
        found_i.append(rows[upper] + start)
        found_j.append(cols[upper] + start)
        found_s.append(scores[rows[upper], cols[upper]])
    if not found_i:
        return pd.DataFrame(
            {"i": pd.Series(dtype=np.int64), "j": pd.Series(dtype=np.int64), "score": pd.Series(dtype=float)}
        )
    return pd.DataFrame(
        {
            "i": np.concatenate(found_i).astype(np.int64),
            "j": np.concatenate(found_j).astype(np.int64),
            "score": np.concatenate(found_s).astype(float),
        }
    )


_EMPTY_REJECTED = pd.DataFrame({
    "candidate_index": pd.Series(dtype=np.int64), "candidate_text": pd.Series(dtype=str),
    "duplicate_of": pd.Series(dtype=str), "duplicate_index": pd.Series(dtype=np.int64),
    "duplicate_text": pd.Series(dtype=str), "score": pd.Series(dtype=float),
})[list(REJECTED_COLUMNS)]


def filter_new(
    candidates: Sequence[str], existing: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> tuple[list[int], pd.DataFrame]:
    """Which candidate texts are new: ``(kept, rejected)``.

    A candidate is rejected when it scores at least ``threshold`` against an EXISTING (live) text,
    or against an EARLIER KEPT candidate (the first of a group of near duplicates is kept; a
    candidate that only duplicates a rejected one is compared with what will actually be live,
    so it may be kept). ``kept`` lists positions in ``candidates`` in order. ``rejected`` has
    ``REJECTED_COLUMNS``: the candidate, ``duplicate_of`` (``"existing"`` or ``"candidate"``), the
    position and text it duplicates (the best-scoring one, existing texts first) and the score.
    """
    threshold = _threshold(threshold)
    new = _texts(candidates)
    live = _texts(existing)
    best_existing = np.full(len(new), -1, dtype=np.int64)
    best_existing_score = np.zeros(len(new), dtype=float)
    if live and new:
        for start, scores in _blocks(new, live, threshold):
            stop = start + len(scores)
            best_existing[start:stop] = scores.argmax(axis=1)
            best_existing_score[start:stop] = scores.max(axis=1)
        best_existing[best_existing_score < max(threshold, 1e-9)] = -1

    rejected: list[dict[str, object]] = []
    for i in np.flatnonzero(best_existing >= 0):
        j = int(best_existing[i])
        rejected.append(
            {
                "candidate_index": int(i),
                "candidate_text": new[i],
                "duplicate_of": DUPLICATES_EXISTING,
                "duplicate_index": j,
                "duplicate_text": live[j],
                "score": float(best_existing_score[i]),
            }
        )

    # Among the candidates that survive the live items: keep the first of each group, in order.
    survivors = np.flatnonzero(best_existing < 0)
    kept_mask = np.zeros(len(survivors), dtype=bool)
    if len(survivors):
        texts = [new[i] for i in survivors]
        for start, scores in _blocks(texts, texts, threshold):
            for row in range(len(scores)):
                k = start + row
                earlier = scores[row, :k] * kept_mask[:k]  # only kept candidates are live-to-be
                if k and earlier.max(initial=0.0) >= max(threshold, 1e-9):
                    j = int(earlier.argmax())
                    rejected.append(
                        {
                            "candidate_index": int(survivors[k]),
                            "candidate_text": texts[k],
                            "duplicate_of": DUPLICATES_CANDIDATE,
                            "duplicate_index": int(survivors[j]),
                            "duplicate_text": texts[j],
                            "score": float(earlier[j]),
                        }
                    )
                else:
                    kept_mask[k] = True
    kept = [int(i) for i in survivors[kept_mask]]
    if not rejected:  # the usual case in scenario writing: building, sorting, typing a frame costs ~4 ms
        return kept, _EMPTY_REJECTED.copy()
    frame = pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS))
    frame = frame.sort_values("candidate_index", kind="stable").reset_index(drop=True)
    return kept, frame.astype({"candidate_index": np.int64, "duplicate_index": np.int64, "score": float})
