"""Promoted real-world items against live items: rejected as "near-duplicate of <item>" with every
other reason, counted under one name; composition promotes one of two rewordings; and the dataset's
evidence tables of promoted and retired items."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from skill_pipeline.core.candidates import candidates_from_frame
from skill_pipeline.core.composition import compose_dataset
from skill_pipeline.core.dataset_evidence import (
    PROMOTED_COLUMNS,
    RETIRED_COLUMNS,
    RETIRED_DISPLACED,
    RETIRED_NOT_SCORED,
    promoted_items,
    retired_items,
)
from skill_pipeline.core.promotion import score_candidates
from skill_pipeline.core.promotion_duplicates import live_items_frame, near_duplicates_of_live, options_text
from skill_pipeline.core.promotion_reasons import REASON_LOW_JUDGE_SCORE, REASON_NEAR_DUPLICATE, REASON_SEPARATOR
from skill_pipeline.models import GoldStandardCriteria, Skill
from skill_pipeline_tests.builders import candidate, synthetic_pool

SKILL = Skill(id="skill-py", name="Python", description="functions, classes",
              created_at=datetime(2024, 5, 1, tzinfo=timezone.utc))
CRITERIA = GoldStandardCriteria(min_answers=5)
FUNCTION = ("Which keyword defines a function in Python?", ["def", "func", "lambda", "fn"])
REWORDED = ("In Python, which keyword defines a function?", ["def", "lambda", "func", "fn"])
CLASS = ("Which keyword defines a class in Python?", ["class", "struct", "object", "type"])
GIL = ("What does the GIL in CPython prevent?", ["parallel bytecode", "imports", "recursion", "I/O"])


def _challenges(rows: dict[str, tuple[str, list[str]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": cid, "skill_id": SKILL.id, "difficulty": 2, "question": q, "options_json": json.dumps(o),
          "correct_option": 0, "explanation": "Because."} for cid, (q, o) in rows.items()]
    )


def _answers(ids: list[str], n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        [{"challenge_id": cid, "is_correct": True, "response_time": 5_000, "confidence": 4} for cid in ids for _ in range(n)]
    )


def _live(rows: dict[str, tuple[str, list[str]]]) -> list:
    """Dataset items of real-world challenges ``rows`` (as composition writes them)."""
    candidates = [candidate(cid, 2, question=q, options=o) for cid, (q, o) in rows.items()]
    return compose_dataset(SKILL, synthetic_pool(SKILL), candidates, [], max_promotions=50).target


def test_the_scores_behind_the_rule() -> None:
    """Hand-checked: same question reworded with the same options → duplicate; one word different
    in the question but different options → not (the options tell them apart)."""
    live = pd.DataFrame({"item_key": ["fn", "syn"], "challenge_id": ["c-fn", None],
                         "text": [FUNCTION[0], "A learner reviews list comprehensions"],
                         "options_text": [options_text(FUNCTION[1]), ""]})
    found = near_duplicates_of_live(
        ["new-1", "new-2", "new-3", "c-fn"],
        [REWORDED[0], CLASS[0], GIL[0], FUNCTION[0]],
        [options_text(REWORDED[1]), options_text(CLASS[1]), options_text(GIL[1]), options_text(FUNCTION[1])],
        live,
    )
    assert found.tolist() == ["fn", "", "", ""]  # c-fn is the live item itself: not its own duplicate


def test_a_candidate_rewording_a_live_item_is_rejected_with_all_its_reasons() -> None:
    stored = _live({"c-fn": FUNCTION})
    challenges = _challenges({"c-fn": FUNCTION, "c-new": REWORDED, "c-class": CLASS})
    judge = {"c-fn": 0.9, "c-new": 0.1, "c-class": 0.9}
    frame, summary = score_candidates(challenges, _answers(["c-fn", "c-new", "c-class"]), judge, CRITERIA,
                                      live_items=live_items_frame(stored))
    reasons = dict(zip(frame["challenge_id"], frame["reason"]))
    live_key = next(i.item_key for i in stored if i.source == "real_world")
    assert reasons["c-new"] == REASON_LOW_JUDGE_SCORE + REASON_SEPARATOR + f"near-duplicate of {live_key}"
    assert reasons["c-fn"] == "" and reasons["c-class"] == ""  # the live one stays; a different question passes
    assert summary.rejected_by_reason[REASON_NEAR_DUPLICATE] == 1 and live_key.startswith("real_world-")
    assert not any(k.startswith("near-duplicate of real_world") for k in summary.rejected_by_reason)
    # Without live items the rule does not fire.
    alone = score_candidates(challenges, _answers(["c-new"]), judge, CRITERIA)[0].set_index("challenge_id")
    assert alone.loc["c-new", "reason"] == REASON_LOW_JUDGE_SCORE


def test_a_candidate_rewording_a_synthetic_item_is_rejected_too() -> None:
    pool = synthetic_pool(SKILL)
    stored = compose_dataset(SKILL, pool, [], [], max_promotions=0).target
    scenario = pool[0].scenario
    frame, _ = score_candidates(_challenges({"c-copy": (scenario + "?", ["a", "b", "c", "d"])}), _answers(["c-copy"]),
                                {"c-copy": 0.9}, CRITERIA, live_items=live_items_frame(stored))
    assert frame.loc[0, "reason"] == f"near-duplicate of {pool[0].item_key}"
    assert not frame.loc[0, "eligible"]


def test_two_new_rewordings_promote_only_the_better_one() -> None:
    better = candidate("c-a", 2, question=FUNCTION[0], options=FUNCTION[1], judge_composite_score=0.95)
    worse = candidate("c-b", 3, question=REWORDED[0], options=REWORDED[1], judge_composite_score=0.8)
    other = candidate("c-c", 2, question=CLASS[0], options=CLASS[1], judge_composite_score=0.7)
    composition = compose_dataset(SKILL, synthetic_pool(SKILL), [worse, other, better], [], max_promotions=5)
    assert composition.newly_promoted == ["c-a", "c-c"]
    assert composition.near_duplicates_skipped == {"c-b": "c-a"}


def _scored(rows: dict[str, tuple[str, list[str]]], judge: dict[str, float]) -> pd.DataFrame:
    return score_candidates(_challenges(rows), _answers(list(rows)), judge, CRITERIA)[0]


def test_evidence_tables_of_promoted_and_retired_items() -> None:
    first = _scored({"c-fn": FUNCTION, "c-gil": GIL, "c-class": CLASS}, {"c-fn": 0.9, "c-gil": 0.9, "c-class": 0.9})
    stored = compose_dataset(SKILL, synthetic_pool(SKILL), candidates_from_frame(first, eligible_only=True), [],
                             max_promotions=5).target
    # Next run: c-gil's judge score fell, c-class left the skill store, a new one is promoted.
    rows = {"c-fn": FUNCTION, "c-gil": GIL, "c-new": ("Which built-in returns an object's length?", ["len", "size", "count", "length"])}
    second = _scored(rows, {"c-fn": 0.9, "c-gil": 0.2, "c-new": 0.9})
    composition = compose_dataset(SKILL, synthetic_pool(SKILL), candidates_from_frame(second, eligible_only=True),
                                  stored, max_promotions=5)
    promoted = promoted_items(composition, second)
    assert list(promoted.columns) == list(PROMOTED_COLUMNS)
    assert promoted[["challenge_id", "new_this_run"]].values.tolist() == [["c-new", True], ["c-fn", False]]
    assert promoted["n_valid"].tolist() == [12, 12] and promoted["difficulty"].tolist() == [2, 2]
    assert promoted["wilson_low"].iloc[0] == round(second.set_index("challenge_id").loc["c-new", "wilson_low"], 3)
    ids = {i.metadata["challenge_id"]: i.id for i in composition.target if i.source == "real_world"}
    assert promoted["item_id"].tolist() == [ids["c-new"], ids["c-fn"]]

    retired = retired_items(SKILL, composition, second, stored)
    assert list(retired.columns) == list(RETIRED_COLUMNS)
    by_id = retired.set_index("challenge_id")
    assert by_id.loc["c-gil", "reason_retired"] == "judge score below minimum"
    assert by_id.loc["c-class", "reason_retired"] == RETIRED_NOT_SCORED and pd.isna(by_id.loc["c-class", "n_valid"])
    stored_ids = {i.metadata["challenge_id"]: i.id for i in stored if i.source == "real_world"}
    assert by_id.loc["c-gil", "item_id"] == stored_ids["c-gil"] and by_id.loc["c-gil", "difficulty"] == 2
    assert RETIRED_DISPLACED != RETIRED_NOT_SCORED


def test_skill_dataset_metadata_shows_promoted_and_retired_items_capped(tmp_path) -> None:
    import dagster as dg

    from skill_pipeline.assets.metadata import EVIDENCE_ROWS
    from skill_pipeline.resources.promotion_policy import PromotionPolicy
    from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        skill_id = tick(instance, resources, cursor=None).run_requests[0].partition_key
        result = materialize_skill(instance, resources, skill_id)
        # A stricter deployment next run: every promoted item loses its eligibility and is retired.
        strict = {**resources, "promotion_policy": PromotionPolicy(min_judge_score=1.0)}
        again = materialize_skill(instance, strict, skill_id)
    meta = metadata(result, "skill_dataset")
    promoted = meta["promoted_items"]
    assert meta["promoted_items_count"] == meta["real_world_count"] == len(promoted.records) > 0
    assert meta["promoted_items_not_shown"] == 0 and len(promoted.records) <= EVIDENCE_ROWS
    assert [c.name for c in promoted.schema.columns] == list(PROMOTED_COLUMNS)
    assert all(r.data["new_this_run"] and r.data["n_valid"] >= 10 for r in promoted.records)
    assert metadata(result, "gold_standard_candidates")["near_duplicates_of_live_items"] == 0  # nothing live yet

    retired = metadata(again, "skill_dataset")["retired_items"]
    assert len(retired.records) == meta["real_world_count"]
    assert {r.data["challenge_id"] for r in retired.records} == {r.data["challenge_id"] for r in promoted.records}
    assert all("judge score below minimum" in r.data["reason_retired"] for r in retired.records)
    assert metadata(again, "gold_standard_candidates")["live_items_compared"] == 50
