"""The evidence behind a composition, per challenge: which real-world items hold slots and why, which
left and why.

Why: "5 promoted, 2 retired" says nothing a reviewer can check. The asset's metadata shows, per
item, the figures the decision rests on (valid answers, correct rate and its lower Wilson bound,
discrimination, calibrated level, judge score) from the candidates frame of the same run, and for a
retired item the reason it left. Pure pandas; the asset turns the frames into capped tables.
"""

from __future__ import annotations

import pandas as pd

from skill_pipeline.core.composition import Composition
from skill_pipeline.core.generation import item_id, real_world_item_key
from skill_pipeline.models import DatasetItem, Skill

FIGURES: tuple[str, ...] = (
    "written_difficulty", "n_valid", "correct_rate", "wilson_low", "response_time_score",
    "discrimination", "calibrated_level", "judge_composite_score",
)
PROMOTED_COLUMNS: tuple[str, ...] = ("item_id", "challenge_id", "difficulty", "new_this_run", *FIGURES)
RETIRED_COLUMNS: tuple[str, ...] = ("item_id", "challenge_id", "difficulty", *FIGURES, "reason_retired")

RETIRED_NOT_SCORED = "no longer among the skill's challenges"
RETIRED_DISPLACED = "eligible, but its difficulty's slots went to better-ranked items"


def _figures(candidates: pd.DataFrame, challenge_ids: list[str]) -> pd.DataFrame:
    """The candidates frame's figures (and reason, eligibility) for ``challenge_ids``, in that order."""
    wanted = [c for c in (*FIGURES, "eligible", "reason") if c in candidates.columns]
    indexed = candidates.assign(challenge_id=candidates["challenge_id"].astype(str)).drop_duplicates("challenge_id")
    return indexed.set_index("challenge_id")[wanted].reindex(challenge_ids).reset_index()


def promoted_items(composition: Composition, candidates: pd.DataFrame) -> pd.DataFrame:
    """The real-world items of the target, newly promoted first, with their figures (``PROMOTED_COLUMNS``)."""
    real = [item for item in composition.target if item.source == "real_world"]
    new = set(composition.newly_promoted)
    ids = [str(item.metadata.get("challenge_id")) for item in real]
    frame = _figures(candidates, ids)
    frame.insert(0, "item_id", [item.id for item in real])
    frame.insert(2, "difficulty", [item.difficulty for item in real])
    frame.insert(3, "new_this_run", [cid in new for cid in ids])
    frame = frame.sort_values(["new_this_run", "difficulty", "challenge_id"], ascending=[False, True, True], kind="stable")
    return frame.reindex(columns=list(PROMOTED_COLUMNS)).round(3).reset_index(drop=True)


def retired_items(
    skill: Skill, composition: Composition, candidates: pd.DataFrame, stored: list[DatasetItem]
) -> pd.DataFrame:
    """The real-world items this composition removes, with their figures and why (``RETIRED_COLUMNS``):
    the candidates frame's reasons if the challenge is no longer eligible, else why it lost its slot."""
    by_challenge = {
        str(item.metadata.get("challenge_id")): item for item in stored if item.source == "real_world"
    }
    ids = list(composition.retired)
    frame = _figures(candidates, ids)
    frame.insert(0, "item_id", [
        by_challenge[c].id if c in by_challenge else item_id(skill.id, real_world_item_key(c), skill.created_at)
        for c in ids
    ])
    frame.insert(2, "difficulty", [by_challenge[c].difficulty if c in by_challenge else None for c in ids])
    eligible = frame["eligible"] if "eligible" in frame.columns else pd.Series([None] * len(frame), dtype=object)
    reason = frame["reason"] if "reason" in frame.columns else pd.Series([None] * len(frame), dtype=object)
    frame["reason_retired"] = [
        RETIRED_NOT_SCORED if pd.isna(e) else (RETIRED_DISPLACED if bool(e) else str(r))
        for e, r in zip(eligible.tolist(), reason.tolist())
    ]
    frame["difficulty"] = pd.array(frame["difficulty"], dtype="Int64")
    return frame.reindex(columns=list(RETIRED_COLUMNS)).round(3).reset_index(drop=True)
