"""Scenario generation: the prompt per difficulty, parsing of the model's reply, item keys and ids.

The prompt and guidance are the seed's. What differs is what happens to the reply: it is parsed
into validated ``Scenario`` models or rejected with a reason (the caller retries, then fails),
never padded with "Generic scenario" fallbacks.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from skill_pipeline.models import (
    SCENARIOS_PER_DIFFICULTY,
    DatasetItem,
    Scenario,
    ScenarioRequest,
    Skill,
    difficulty_range,
)

QUESTION_CHARACTERISTICS: dict[str, Any] = {
    "min_length": 10,
    "max_length": 500,
    "must_have_explanation": True,
    "option_count": 4,
}


class ScenarioParseError(ValueError):
    """The model's reply could not be turned into the scenarios asked for."""


def difficulty_guidance(difficulty: int) -> str:
    if difficulty <= 2:
        return "- Basic recall and recognition\n- Fundamental concepts\n- Clear, straightforward questions"
    if difficulty <= 4:
        return "- Understanding relationships between concepts\n- Simple application of knowledge\n- Some context required"
    if difficulty <= 6:
        return "- Application to new situations\n- Combining multiple concepts\n- Analysis of scenarios"
    if difficulty <= 8:
        return "- Complex problem-solving\n- Edge cases and exceptions\n- Deep understanding required"
    return (
        "- Expert-level knowledge\n- Subtle distinctions\n- Real-world complex scenarios\n"
        "- Multiple valid approaches to consider"
    )


SCENARIO_PROMPT_TEMPLATE = """You are generating test scenarios for evaluating MCQ challenge generation.

SKILL: {skill_name}
DESCRIPTION: {skill_description}
DIFFICULTY LEVEL: {difficulty}/10

Generate {count} diverse scenarios that a challenge at this difficulty level should cover.

For difficulty {difficulty}/10:
{guidance}

Each scenario should specify:
1. A specific context/situation where this skill applies
2. The key concepts that should be tested
3. What makes this appropriate for difficulty {difficulty}
{avoid_block}
OUTPUT FORMAT (strict JSON array):
[
  {{
    "scenario": "Brief description of the testing context",
    "expected_concepts": ["concept1", "concept2"],
    "difficulty": {difficulty}
  }}
]

Generate {count} diverse, non-overlapping scenarios: each in a different situation, each testing
different concepts. Write concrete situations, never generic or template text."""

# The version is the template's content hash: a changed prompt is a new version, visibly.
SCENARIO_PROMPT_VERSION = "scenarios-" + hashlib.sha256(SCENARIO_PROMPT_TEMPLATE.encode()).hexdigest()[:10]

# JSON schema of the reply, for forced tool use / structured output.
SCENARIO_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scenarios": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "scenario": {"type": "string"},
                    "expected_concepts": {"type": "array", "items": {"type": "string"}},
                    "difficulty": {"type": "integer"},
                },
                "required": ["scenario", "expected_concepts", "difficulty"],
            },
        }
    },
    "required": ["scenarios"],
}


def build_scenario_prompt(request: ScenarioRequest) -> str:
    """The seed's prompt. Variety comes from the prompt (the SDK no longer takes temperature):
    a retry lists the scenarios already accepted so the model writes different ones."""
    avoid_block = ""
    if request.avoid:
        listed = "\n".join(f"- {text}" for text in request.avoid)
        avoid_block = f"\nThese scenarios already exist; write different ones:\n{listed}\n"
    return SCENARIO_PROMPT_TEMPLATE.format(
        skill_name=request.skill.name,
        skill_description=request.skill.description or "(no description)",
        difficulty=request.difficulty,
        count=request.count,
        guidance=difficulty_guidance(request.difficulty),
        avoid_block=avoid_block,
    )


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _extract_json(text: str) -> Any:
    """JSON from a reply that may wrap it in code fences or prose."""
    candidates: list[str] = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    for opener, closer in (("[", "]"), ("{", "}")):
        start, end = text.find(opener), text.rfind(closer)
        if start != -1 and end > start:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ScenarioParseError(f"no JSON array found in the reply (starts {text[:80]!r})")


def parse_scenarios_partial(text: str, difficulty: int) -> tuple[list[Scenario], list[str]]:
    """The valid scenarios in the model's reply, and a reason for each rejected one.

    Accepts a bare array, ``{"scenarios": [...]}`` (tool use), fences and surrounding prose. A
    scenario of another difficulty or a duplicate is rejected. Raises ``ScenarioParseError`` when the
    reply holds no array at all.
    """
    data = _extract_json(text)
    if isinstance(data, dict):
        data = data.get("scenarios")
    if not isinstance(data, list):
        raise ScenarioParseError("the reply's JSON is not an array of scenarios")
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    problems: list[str] = []
    for index, raw in enumerate(data):
        try:
            scenario = Scenario.model_validate(raw)
        except ValidationError as exc:
            problems.append(f"#{index}: {exc.errors()[0]['msg']}")
            continue
        if scenario.difficulty != difficulty:
            problems.append(f"#{index}: difficulty {scenario.difficulty}, asked for {difficulty}")
            continue
        key = scenario.scenario.casefold()
        if key in seen:
            problems.append(f"#{index}: duplicate scenario")
            continue
        seen.add(key)
        scenarios.append(scenario)
    return scenarios, problems


def parse_scenarios(text: str, difficulty: int, count: int = SCENARIOS_PER_DIFFICULTY) -> list[Scenario]:
    """Exactly ``count`` validated scenarios from the reply, or ``ScenarioParseError`` saying why not.

    Fewer than ``count`` valid ones is an error: the caller asks again rather than storing a short
    batch or padding it.
    """
    scenarios, problems = parse_scenarios_partial(text, difficulty)
    if len(scenarios) < count:
        detail = "; ".join(problems) or "the model returned too few"
        raise ScenarioParseError(f"{len(scenarios)} valid scenarios of {count} at difficulty {difficulty}: {detail}")
    return scenarios[:count]


def synthetic_item_key(difficulty: int, slot: int) -> str:
    """Key of the ``slot``-th (1-based) synthetic scenario at ``difficulty``.

    Keyed by slot, not content: regenerating a skill rewrites the same items in place.
    """
    return f"synthetic-d{difficulty:02d}-s{slot}"


def real_world_item_key(challenge_id: str) -> str:
    return f"real_world-{challenge_id}"


def item_id(skill_id: str, item_key: str, created_at: datetime) -> str:
    """Deterministic UUID version 7 for an item.

    Opik requires v7 ids and reads a time from the first 48 bits (it lists newest first), so those
    bits carry a real time (the skill's creation); the remaining 74 random bits of the format carry
    a hash of skill id + item key. The same skill and key always give the same id.
    """
    millis = int(created_at.timestamp() * 1000) & ((1 << 48) - 1)
    digest = int.from_bytes(hashlib.sha256(f"{skill_id}\x1f{item_key}".encode()).digest()[:10], "big")
    rand_a = digest >> 68 & 0xFFF  # 12 bits
    rand_b = digest & ((1 << 62) - 1)  # 62 bits
    value = millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


class SyntheticScenario(BaseModel):
    """A scenario placed in its slot, with where it came from: a row of ``synthetic_scenarios``."""

    item_key: str
    slot: int
    difficulty: int
    scenario: str
    expected_concepts: list[str]
    generator: str
    model: str
    prompt_version: str
    skill_fingerprint: str | None
    created_at: str
    adopted: DatasetItem | None = None
    """The stored item this scenario was adopted from, when ours would differ from it (an item in the
    old backend's shape: random id, no fingerprint). It is written back as stored, never rewritten."""


def scenario_to_item(skill: Skill, row: SyntheticScenario) -> DatasetItem:
    """The seed's synthetic item shape, with a deterministic id and provenance in metadata; an adopted
    item exactly as it is stored (its id and content kept)."""
    if row.adopted is not None:
        return row.adopted
    low, high = difficulty_range(row.difficulty)
    return DatasetItem(
        id=item_id(skill.id, row.item_key, skill.created_at),
        input={
            "skill_id": skill.id,
            "skill_name": skill.name,
            "skill_description": skill.description,
            "difficulty": row.difficulty,
            "scenario": row.scenario,
            "expected_concepts": list(row.expected_concepts),
        },
        expected_output={
            "difficulty_range": [low, high],
            "required_concepts": list(row.expected_concepts),
            "question_characteristics": dict(QUESTION_CHARACTERISTICS),
        },
        metadata={
            "source": "synthetic",
            "item_id": row.item_key,
            "created_at": row.created_at,
            "generator": row.generator,
            "model": row.model,
            "prompt_version": row.prompt_version,
            "skill_fingerprint": row.skill_fingerprint,
        },
    )


def item_to_scenario(item: DatasetItem) -> SyntheticScenario | None:
    """Adopt a stored synthetic item back into the pool (None if it is not one we can place).

    Items written by another tool (e.g. the seed, with random ids and timestamped keys) are given
    slots by their order, so adoption normalises them to deterministic keys.
    """
    if item.source != "synthetic":
        return None
    try:
        scenario = Scenario(
            scenario=str(item.input.get("scenario", "")),
            expected_concepts=list(item.input.get("expected_concepts") or []),
            difficulty=int(item.input.get("difficulty", 0)),
        )
    except (ValidationError, ValueError, TypeError):
        return None
    key = item.item_key
    match = re.fullmatch(r"synthetic-d(\d\d)-s(\d+)", key)
    slot = int(match.group(2)) if match else 0
    return SyntheticScenario(
        item_key=key,
        slot=slot,
        difficulty=scenario.difficulty,
        scenario=scenario.scenario,
        expected_concepts=scenario.expected_concepts,
        generator=str(item.metadata.get("generator", "adopted")),
        model=str(item.metadata.get("model", "unknown")),
        prompt_version=str(item.metadata.get("prompt_version", "unknown")),
        skill_fingerprint=_text_or_none(item.metadata.get("skill_fingerprint")),
        created_at=str(item.metadata.get("created_at", "")),
        adopted=item,
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def adopt_items(skill: Skill, items: list[DatasetItem]) -> list[SyntheticScenario]:
    """The synthetic items of a stored dataset as pool rows in slots 1..5 per difficulty.

    A row keeps its stored item (``adopted``) only when the item we would write for it differs in
    id or content (the old backend's shape); otherwise it is an ordinary row of ours.
    """
    rows = [row for row in (item_to_scenario(item) for item in items) if row is not None]
    placed = []
    for row in assign_slots(rows):
        stored = row.adopted
        plain = row.model_copy(update={"adopted": None})
        ours = scenario_to_item(skill, plain)
        same = stored is not None and ours.id == stored.id and ours.content_hash == stored.content_hash
        placed.append(plain if same else row)
    return placed


def assign_slots(rows: list[SyntheticScenario]) -> list[SyntheticScenario]:
    """Give adopted scenarios deterministic slots 1..5 per difficulty (keeping existing slots first)."""
    placed: list[SyntheticScenario] = []
    by_difficulty: dict[int, list[SyntheticScenario]] = {}
    for row in rows:
        by_difficulty.setdefault(row.difficulty, []).append(row)
    for difficulty, group in sorted(by_difficulty.items()):
        group.sort(key=lambda r: (r.slot == 0, r.slot, r.scenario))
        for slot, row in enumerate(group[:SCENARIOS_PER_DIFFICULTY], start=1):
            placed.append(row.model_copy(update={"slot": slot, "item_key": synthetic_item_key(difficulty, slot)}))
    return placed
