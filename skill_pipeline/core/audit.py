"""Audits of a stored dataset: the rules every skill dataset must keep, as pure functions.

The asset checks call these on what the store really holds after a sync, so a check failing means
the dataset a user evaluates against is wrong, not that a DataFrame in memory was.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from pydantic import BaseModel

from skill_pipeline.core.generation import item_id
from skill_pipeline.models import (
    DATASET_SIZE,
    DIFFICULTY_LEVELS,
    SCENARIOS_PER_DIFFICULTY,
    DatasetItem,
    Skill,
    difficulty_range,
    find_placeholder,
)

# Keys that would carry personal data into a dataset item; any of them anywhere fails the audit.
PERSONAL_KEYS = re.compile(r"^(user_?id|user|email|username|user_name|answered_by)$", re.IGNORECASE)


class Verdict(BaseModel):
    passed: bool
    detail: str
    failures: list[str] = []


def _walk(value, path: str = "") -> Iterable[tuple[str, object]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield f"{path}.{key}" if path else str(key), inner
            yield from _walk(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{index}]")


def size_and_balance(items: list[DatasetItem]) -> Verdict:
    counts = Counter(item.difficulty for item in items)
    off = [f"difficulty {d}: {counts.get(d, 0)}" for d in DIFFICULTY_LEVELS if counts.get(d, 0) != SCENARIOS_PER_DIFFICULTY]
    extra = sorted(set(counts) - set(DIFFICULTY_LEVELS))
    off += [f"difficulty {d} is outside 1–10: {counts[d]}" for d in extra]
    passed = len(items) == DATASET_SIZE and not off
    return Verdict(passed=passed, detail=f"{len(items)} items (want {DATASET_SIZE}, {SCENARIOS_PER_DIFFICULTY} per difficulty)", failures=off)


def unique_deterministic_ids(skill: Skill, items: list[DatasetItem]) -> Verdict:
    failures: list[str] = []
    duplicates = [i for i, n in Counter(item.id for item in items).items() if n > 1]
    failures += [f"id {i} stored more than once" for i in duplicates]
    keys = [k for k, n in Counter(item.item_key for item in items).items() if n > 1]
    failures += [f"item key {k} stored more than once" for k in keys]
    adopted = 0
    for item in items:
        if not _OUR_KEY.fullmatch(item.item_key):
            adopted += 1  # adopted from the old backend as stored: its id is kept, not derived
            continue
        expected = item_id(skill.id, item.item_key, skill.created_at)
        if item.id != expected:
            failures.append(f"{item.item_key}: id {item.id} is not the deterministic {expected}")
    detail = f"{len(items)} ids checked" + (f" ({adopted} adopted items keep their stored ids)" if adopted else "")
    return Verdict(passed=not failures, detail=detail, failures=failures[:20])


# Keys the pipeline writes (``synthetic_item_key``, ``real_world_item_key``); any other key is an item
# adopted from the old backend.
_OUR_KEY = re.compile(r"synthetic-d\d\d-s\d+|real_world-.+")


def no_placeholder_text(items: list[DatasetItem]) -> Verdict:
    failures: list[str] = []
    for item in items:
        for path, value in _walk(item.input):
            if isinstance(value, str) and (marker := find_placeholder(value)):
                failures.append(f"{item.item_key}: input.{path} contains {marker!r}")
        if item.source == "synthetic" and not item.input.get("expected_concepts"):
            failures.append(f"{item.item_key}: no expected concept")
    return Verdict(passed=not failures, detail=f"{len(items)} items scanned", failures=failures[:20])


def difficulty_ranges(items: list[DatasetItem]) -> Verdict:
    failures = [
        f"{item.item_key}: range {item.expected_output.get('difficulty_range')} for difficulty {item.difficulty}"
        for item in items
        if list(item.expected_output.get("difficulty_range") or []) != list(difficulty_range(item.difficulty))
    ]
    return Verdict(passed=not failures, detail="difficulty_range = target ± 1, clamped to 1–10", failures=failures[:20])


def only_eligible_real_world(items: list[DatasetItem], eligible_challenges: set[str]) -> Verdict:
    real = [item for item in items if item.source == "real_world"]
    failures = [
        f"{item.item_key}: challenge {item.metadata.get('challenge_id')} did not meet the criteria in force"
        for item in real
        if str(item.metadata.get("challenge_id")) not in eligible_challenges
    ]
    return Verdict(passed=not failures, detail=f"{len(real)} real-world items checked", failures=failures[:20])


def no_personal_data(items: list[DatasetItem], user_ids: Iterable[str] = ()) -> Verdict:
    known = {u for u in user_ids if u}
    failures: list[str] = []
    for item in items:
        for path, value in _walk(item.data()):
            if PERSONAL_KEYS.match(path.rsplit(".", 1)[-1].split("[")[0]):
                failures.append(f"{item.item_key}: key {path}")
            if isinstance(value, str) and value in known:
                failures.append(f"{item.item_key}: a user id at {path}")
    return Verdict(passed=not failures, detail=f"{len(items)} items scanned", failures=failures[:20])
