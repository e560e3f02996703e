"""Dataset composition: which 50 items a skill's dataset holds, and the diff to get there.

Five slots per difficulty. Eligible real-world challenges take slots from synthetic scenarios,
best first (``Candidate.ranking_key``: judge score, response-time score, correct rate, answer
count), at most ``max_promotions`` new ones a run so replacement is gradual. A promoted item stays
while it remains eligible; one that stops being eligible gives its slot back to a synthetic
scenario. Synthetic scenarios fill slots in slot order, so the highest slots are displaced first.

Near duplicates among the real-world items: the candidates frame already rejects a challenge that
rewords a LIVE item (``core.promotion_duplicates``); two new candidates that reword each other are
both "new", so composition promotes the first (best first) and skips the other when it would
take a slot (``near_duplicates_skipped``): one run cannot promote a question twice.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from skill_pipeline.core.concepts import challenge_concepts
from skill_pipeline.core.near_duplicates import DEFAULT_THRESHOLD
from skill_pipeline.core.promotion_duplicates import nearest_duplicate, options_text
from skill_pipeline.core.generation import (
    QUESTION_CHARACTERISTICS,
    SyntheticScenario,
    item_id,
    real_world_item_key,
    scenario_to_item,
)
from skill_pipeline.models import (
    DIFFICULTY_LEVELS,
    SCENARIOS_PER_DIFFICULTY,
    Candidate,
    DatasetItem,
    Skill,
    difficulty_range,
)


class Composition(BaseModel):
    """The target dataset and the writes that reach it from what is stored."""

    target: list[DatasetItem]
    to_write: list[DatasetItem] = Field(description="new ids, or stored ids whose content changed")
    to_delete: list[str] = Field(description="stored ids that are no longer in the target")
    unchanged: int
    inserted: int
    updated: int
    newly_promoted: list[str] = Field(description="challenge ids promoted by this run")
    retired: list[str] = Field(description="challenge ids removed because they are no longer eligible")
    near_duplicates_skipped: dict[str, str] = Field(
        default_factory=dict,
        description="eligible challenge id -> the real-world challenge taking a slot that it near-duplicates",
    )

    def counts_by_difficulty(self) -> dict[int, Counter]:
        table: dict[int, Counter] = {d: Counter() for d in DIFFICULTY_LEVELS}
        for item in self.target:
            table.setdefault(item.difficulty, Counter())[item.source] += 1
        return table


def candidate_to_item(skill: Skill, candidate: Candidate) -> DatasetItem:
    """The seed's real-world item shape. Aggregates only: no user id reaches the dataset."""
    low, high = difficulty_range(candidate.difficulty)
    key = real_world_item_key(candidate.challenge_id)
    concepts = challenge_concepts(skill.description, [candidate.question, *candidate.options, candidate.explanation])
    return DatasetItem(
        id=item_id(skill.id, key, skill.created_at),
        input={
            "skill_id": skill.id,
            "skill_name": skill.name,
            "skill_description": skill.description,
            "difficulty": candidate.difficulty,
            "scenario": candidate.question,
            "expected_concepts": concepts,
        },
        expected_output={
            "difficulty_range": [low, high],
            "validated_question": candidate.question,
            "validated_options": list(candidate.options),
            "validated_correct_index": candidate.correct_option,
            "validated_explanation": candidate.explanation,
            "required_concepts": concepts,
            "question_characteristics": dict(QUESTION_CHARACTERISTICS),
        },
        metadata={
            "source": "real_world",
            "item_id": key,
            "challenge_id": candidate.challenge_id,
            "user_metrics": {
                "answer_count": candidate.answer_count,
                "correct_rate": round(candidate.correct_rate, 3),
                "was_correct": candidate.correct_rate >= 0.5,
                "response_time_score": round(candidate.response_time_score, 3),
                "user_confidence": None if candidate.user_confidence is None else round(candidate.user_confidence, 3),
                "judge_composite_score": None
                if candidate.judge_composite_score is None
                else round(candidate.judge_composite_score, 3),
            },
        },
    )


def compose_dataset(
    skill: Skill,
    synthetic: list[SyntheticScenario],
    candidates: list[Candidate],
    stored: list[DatasetItem],
    max_promotions: int = 5,
    near_duplicate_threshold: float = DEFAULT_THRESHOLD,
) -> Composition:
    """Decide the dataset's items and the diff against ``stored``. Pure and deterministic."""
    if max_promotions < 0:
        raise ValueError(f"max_promotions must be >= 0, got {max_promotions}")
    duplicates = sorted(cid for cid, n in Counter(c.challenge_id for c in candidates).items() if n > 1)
    if duplicates:
        raise ValueError(f"candidate challenge ids must be unique; repeated: {duplicates[:5]}")
    eligible = sorted((c for c in candidates if c.eligible), key=Candidate.ranking_key)
    stored_challenges = {
        str(item.metadata.get("challenge_id")) for item in stored if item.source == "real_world"
    }

    real_by_difficulty: dict[int, list[Candidate]] = {d: [] for d in DIFFICULTY_LEVELS}
    # Promoted items that remain eligible keep their slots (best first if the cap is ever exceeded).
    for candidate in eligible:
        bucket = real_by_difficulty[candidate.difficulty]
        if candidate.challenge_id in stored_challenges and len(bucket) < SCENARIOS_PER_DIFFICULTY:
            bucket.append(candidate)
    newly_promoted: list[str] = []
    taking = [c for bucket in real_by_difficulty.values() for c in bucket]
    taking_texts = [(c.question, options_text(c.options)) for c in taking]
    skipped: dict[str, str] = {}
    for candidate in eligible:
        if len(newly_promoted) >= max_promotions:
            break
        bucket = real_by_difficulty[candidate.difficulty]
        if candidate.challenge_id in stored_challenges or len(bucket) >= SCENARIOS_PER_DIFFICULTY:
            continue
        text = (candidate.question, options_text(candidate.options))
        duplicate = nearest_duplicate(*text, taking_texts, near_duplicate_threshold)
        if duplicate is not None:  # it rewords a real-world item taking a slot: one question, once
            skipped[candidate.challenge_id] = taking[duplicate].challenge_id
            continue
        bucket.append(candidate)
        taking.append(candidate)
        taking_texts.append(text)
        newly_promoted.append(candidate.challenge_id)

    pool: dict[int, list[SyntheticScenario]] = {d: [] for d in DIFFICULTY_LEVELS}
    for row in sorted(synthetic, key=lambda r: (r.difficulty, r.slot)):
        pool.setdefault(row.difficulty, []).append(row)

    target: list[DatasetItem] = []
    for difficulty in DIFFICULTY_LEVELS:
        real = real_by_difficulty[difficulty]
        target += [candidate_to_item(skill, c) for c in real]
        free = SCENARIOS_PER_DIFFICULTY - len(real)
        target += [scenario_to_item(skill, row) for row in pool[difficulty][:free]]

    kept = {c.challenge_id for bucket in real_by_difficulty.values() for c in bucket}
    retired = sorted(stored_challenges - kept)
    composition = _diff(target, stored, newly_promoted, retired)
    composition.near_duplicates_skipped = skipped
    return composition


def _diff(
    target: list[DatasetItem], stored: list[DatasetItem], newly_promoted: list[str], retired: list[str]
) -> Composition:
    stored_hash = {item.id: item.content_hash for item in stored}
    target_ids = {item.id for item in target}
    to_write = [item for item in target if stored_hash.get(item.id) != item.content_hash]
    inserted = sum(1 for item in to_write if item.id not in stored_hash)
    return Composition(
        target=target,
        to_write=to_write,
        to_delete=[item.id for item in stored if item.id not in target_ids],
        unchanged=len(target) - len(to_write),
        inserted=inserted,
        updated=len(to_write) - inserted,
        newly_promoted=newly_promoted,
        retired=retired,
    )
