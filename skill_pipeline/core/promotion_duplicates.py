"""Promotion against the live dataset: a real-world challenge that rewords a live item is no new item.

Why: the dataset measures the challenge-generation prompt over 50 distinct questions; promoting a
reworded copy of an item already there counts one question twice (and narrows the error bars on
nothing). So the candidates frame rejects a challenge whose text is a near duplicate
(``core.near_duplicates``: rapidfuzz token-set ratio ≥ the threshold) of a live item, with the
reason ``"near-duplicate of <item key>"`` next to every other reason it fails.

What is compared: the question with each live item's question (a real-world item's validated
question, a synthetic item's scenario), AND, when both have options, the options with its options:
a near duplicate is the same question with the same answers, both scores at or over the threshold.
Why both: two short questions that differ in one word ("defines a function" / "defines a class",
≈ 92) are told apart by their options; and a skill's options name the same few concepts over and
over, so question and options as ONE text make different questions about those concepts score
over 90 (the token-set ratio's subset effect, measured on the demo's challenges: 150–240 false
pairs per skill of 50). Not compared: a challenge with its own item (a promoted challenge stays live), and a
live real-world item with a live real-world item of a LATER challenge id (of two near-duplicate
items both already live — only possible if the threshold was loosened since — the one with the
smaller challenge id stays, so they are not both retired). Candidates are compared with each
other in composition (``nearest_duplicate``), where it is known which of them take slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from skill_pipeline.core.near_duplicates import DEFAULT_THRESHOLD, _scores, _texts, _threshold
from skill_pipeline.models import DatasetItem

LIVE_COLUMNS: tuple[str, ...] = ("item_key", "challenge_id", "text", "options_text")
REASON_NEAR_DUPLICATE_PREFIX = "near-duplicate of "


def near_duplicate_reason(item_key: str) -> str:
    """The rejection reason naming the live item (``summarise`` counts them under one name)."""
    return f"{REASON_NEAR_DUPLICATE_PREFIX}{item_key}"


def options_text(options: object) -> str:
    """A challenge's options as one text ("" when it has none): compared with the other's options."""
    if isinstance(options, np.ndarray):
        options = options.tolist()
    if isinstance(options, list | tuple):
        return " ".join(str(o) for o in options if o is not None and str(o))
    return ""


def live_items_frame(items: Iterable[DatasetItem]) -> pd.DataFrame:
    """The stored dataset's items as ``LIVE_COLUMNS``: key (``metadata.item_id``, else the item id),
    challenge id (real-world items; None for synthetic), question (or scenario) and options text."""
    rows = []
    for item in items:
        real = item.source == "real_world"
        question = item.expected_output.get("validated_question") if real else None
        rows.append(
            {
                "item_key": str(item.metadata.get("item_id") or item.id),
                "challenge_id": str(item.metadata.get("challenge_id")) if real else None,
                "text": str(question or item.input.get("scenario") or ""),
                "options_text": options_text(item.expected_output.get("validated_options")) if real else "",
            }
        )
    return pd.DataFrame(rows, columns=list(LIVE_COLUMNS))


def _pair_scores(questions: list[str], options: list[str], live_q: list[str], live_o: list[str],
                 threshold: float) -> np.ndarray:
    """Question scores, lowered to the options' score where both sides have options (module docstring)."""
    scores = _scores(questions, live_q, threshold)
    both = np.asarray([bool(o) for o in options])[:, None] & np.asarray([bool(o) for o in live_o])[None, :]
    if both.any():
        scores = np.where(both, np.minimum(scores, _scores(options, live_o, threshold)), scores)
    return scores


def near_duplicates_of_live(
    challenge_ids: Sequence[str],
    questions: Sequence[str],
    options: Sequence[str],
    live: pd.DataFrame | None,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.Series:
    """Per challenge, the key of the best-scoring live item it near-duplicates, or "" (module docstring).

    Scores come block-wise from ``rapidfuzz.process.cdist`` (one worker): at 10⁵ challenges × 50
    live items that is milliseconds per block, so the promotion scan stays linear.
    """
    ids = np.asarray([str(c) for c in challenge_ids], dtype=object)
    result = np.full(len(ids), "", dtype=object)
    if live is None or live.empty or not len(ids):
        return pd.Series(result, dtype=object)
    threshold = _threshold(threshold)
    live_texts = _texts(live["text"].tolist())
    live_options = _texts(live["options_text"].tolist())
    live_cid = live["challenge_id"].to_numpy(dtype=object)
    live_keys = live["item_key"].astype(str).to_numpy(dtype=object)
    live_real = pd.notna(live_cid)
    live_cid_str = np.where(live_real, live_cid.astype(str), "")
    is_live = np.isin(ids, live_cid_str[live_real])
    queries, query_options = _texts(list(questions)), _texts(list(options))
    block = 1024
    for start in range(0, len(queries), block):
        stop = start + block
        scores = _pair_scores(queries[start:stop], query_options[start:stop], live_texts, live_options, threshold)
        own = ids[start : start + block, None] == live_cid_str[None, :]
        # A live challenge keeps its slot against live real-world items of later challenge ids.
        later = is_live[start : start + block, None] & live_real[None, :] & (
            live_cid_str[None, :] > ids[start : start + block, None]
        )
        scores[own | later] = 0.0
        best = scores.argmax(axis=1)
        hit = scores[np.arange(len(scores)), best] >= max(threshold, 1e-9)
        result[start : start + block][hit] = live_keys[best[hit]]
    return pd.Series(result, dtype=object)


def nearest_duplicate(
    question: str, options: str, others: Sequence[tuple[str, str]], threshold: float = DEFAULT_THRESHOLD
) -> int | None:
    """Position of the best-scoring ``(question, options)`` of ``others`` that this challenge
    near-duplicates (same rule as against live items), or None. Used by composition over the
    real-world items taking slots (a handful)."""
    if not others or not question:
        return None
    scores = _pair_scores(
        _texts([question]), _texts([options]), _texts([q for q, _ in others]), _texts([o for _, o in others]),
        _threshold(threshold),
    )[0]
    best = int(scores.argmax())
    return best if scores[best] >= max(_threshold(threshold), 1e-9) else None
