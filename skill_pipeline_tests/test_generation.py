import json
import uuid
from datetime import datetime, timezone

import pytest

from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    ScenarioParseError,
    assign_slots,
    build_scenario_prompt,
    difficulty_guidance,
    item_id,
    item_to_scenario,
    parse_scenarios,
    scenario_to_item,
    synthetic_item_key,
)
from skill_pipeline.core.scenario_writing import ScenarioGenerationError
from skill_pipeline.models import ScenarioRequest, Skill, difficulty_range, find_placeholder
from skill_pipeline.resources.llm_offline import OfflineLLM

SKILL = Skill(
    id="skill-42",
    name="SQL Querying",
    description="Writing SQL queries: joins, aggregation, window functions, indexes",
    created_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc),
)


def _scenarios(difficulty: int, n: int = 5) -> list[dict]:
    return [
        {
            "scenario": f"A data analyst debugging report number {i} needs to reason about joins at level {difficulty}",
            "expected_concepts": ["joins", f"case {i}"],
            "difficulty": difficulty,
        }
        for i in range(n)
    ]


def test_prompt_carries_skill_difficulty_and_seed_guidance():
    prompt = build_scenario_prompt(ScenarioRequest(skill=SKILL, difficulty=7, count=5))
    assert "SKILL: SQL Querying" in prompt
    assert "DESCRIPTION: Writing SQL queries" in prompt
    assert "DIFFICULTY LEVEL: 7/10" in prompt
    assert "Edge cases and exceptions" in prompt  # the seed's guidance for 7–8
    assert "Generate 5 diverse scenarios" in prompt
    assert "already exist" not in prompt


def test_retry_prompt_lists_what_already_exists():
    prompt = build_scenario_prompt(
        ScenarioRequest(skill=SKILL, difficulty=2, count=2, avoid=["An analyst joins two tables of orders"])
    )
    assert "Generate 2 diverse scenarios" in prompt
    assert "- An analyst joins two tables of orders" in prompt


@pytest.mark.parametrize(
    ("difficulty", "expected"),
    [(1, "Basic recall"), (2, "Basic recall"), (3, "relationships"), (6, "Combining"), (8, "Edge cases"), (10, "Expert")],
)
def test_difficulty_guidance_bands(difficulty, expected):
    assert expected in difficulty_guidance(difficulty)


def test_prompt_version_is_a_content_hash():
    assert SCENARIO_PROMPT_VERSION.startswith("scenarios-") and len(SCENARIO_PROMPT_VERSION) == len("scenarios-") + 10


def test_parse_plain_array():
    parsed = parse_scenarios(json.dumps(_scenarios(3)), 3)
    assert [p.difficulty for p in parsed] == [3] * 5
    assert parsed[0].expected_concepts == ["joins", "case 0"]


def test_parse_fenced_with_prose_and_tool_shape():
    fenced = "Here you go:\n```json\n" + json.dumps(_scenarios(4)) + "\n```\nHope this helps!"
    assert len(parse_scenarios(fenced, 4)) == 5
    assert len(parse_scenarios(json.dumps({"scenarios": _scenarios(4)}), 4)) == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I cannot help with that.", "no JSON"),
        ('[{"scenario": "cut short', "no JSON"),
        (json.dumps({"answer": 1}), "not an array"),
        (json.dumps(_scenarios(3, n=3)), "3 valid scenarios of 5"),
        (json.dumps(_scenarios(4)), "difficulty 4, asked for 3"),
        (json.dumps(_scenarios(3, 4) + [_scenarios(3)[0]]), "duplicate"),
    ],
)
def test_parse_broken_output_is_rejected_with_reason(text, message):
    with pytest.raises(ScenarioParseError, match=message):
        parse_scenarios(text, 3)


def test_placeholder_and_empty_concepts_are_rejected():
    bad = _scenarios(2)
    bad[0]["scenario"] = "Generic scenario 1 at difficulty 2"
    bad[1]["expected_concepts"] = []
    bad[2]["expected_concepts"] = ["general knowledge"]
    with pytest.raises(ScenarioParseError) as info:
        parse_scenarios(json.dumps(bad), 2)
    assert "placeholder" in str(info.value) and "2 valid scenarios of 5" in str(info.value)


def test_placeholder_detection_is_whole_word():
    assert find_placeholder("Generic scenario 3") == "generic scenario"
    assert find_placeholder("Undo a mistaken todo list item") == "todo"
    assert find_placeholder("A mastodon instance admin") is None


def test_item_ids_are_deterministic_uuid7_with_the_skills_time():
    key = synthetic_item_key(3, 2)
    first = item_id(SKILL.id, key, SKILL.created_at)
    assert first == item_id(SKILL.id, key, SKILL.created_at)
    parsed = uuid.UUID(first)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == int(SKILL.created_at.timestamp() * 1000)
    assert first != item_id(SKILL.id, synthetic_item_key(3, 3), SKILL.created_at)
    assert first != item_id("other-skill", key, SKILL.created_at)


def test_difficulty_range_is_clamped():
    assert difficulty_range(1) == (1, 2)
    assert difficulty_range(5) == (4, 6)
    assert difficulty_range(10) == (9, 10)


def test_offline_writer_is_varied_skill_specific_and_labelled():
    rows = OfflineLLM().generate([SKILL])[SKILL.id].rows
    assert len(rows) == 50
    assert len({r.scenario for r in rows}) == 50
    assert all(r.generator == "offline" for r in rows)
    assert all("SQL Querying" in r.scenario for r in rows)
    concepts = {c for r in rows for c in r.expected_concepts}
    assert {"joins", "window functions", "indexes"} <= concepts
    by_level = {d: {r.scenario.split(",")[0] for r in rows if r.difficulty == d} for d in (1, 10)}
    assert by_level[1].isdisjoint(by_level[10])
    again = OfflineLLM().generate([SKILL])[SKILL.id].rows
    assert [r.scenario for r in again] == [r.scenario for r in rows]


def test_items_round_trip_through_adoption():
    rows = OfflineLLM().generate([SKILL])[SKILL.id].rows
    items = [scenario_to_item(SKILL, r) for r in rows]
    assert items[0].input["skill_id"] == SKILL.id
    assert items[0].expected_output["question_characteristics"]["option_count"] == 4
    adopted = assign_slots([item_to_scenario(i) for i in items])
    assert [scenario_to_item(SKILL, r).content_hash for r in adopted] == [i.content_hash for i in items]


class FlakyLLM(OfflineLLM):
    """Answers with broken output a fixed number of times per difficulty, then behaves."""

    failures: int = 1

    def write_scenarios(self, request):
        reply = super().write_scenarios(request)
        if request.attempt <= self.failures:
            good = json.loads(reply.text)[:2]
            good.append({"scenario": "Generic scenario 1", "expected_concepts": ["x"], "difficulty": request.difficulty})
            return reply.model_copy(update={"text": json.dumps(good)})
        return reply


def test_short_output_is_asked_again_for_the_rest_only():
    calls: list[ScenarioRequest] = []

    class Recording(FlakyLLM):
        def write_scenarios(self, request):
            calls.append(request)
            return super().write_scenarios(request)

    rows = Recording(failures=1).generate([SKILL])[SKILL.id].rows
    assert len(rows) == 50 and not any(find_placeholder(r.scenario) for r in rows)
    retries = [c for c in calls if c.attempt == 2]
    assert len(retries) == 10 and all(c.count == 3 and len(c.avoid) == 2 for c in retries)


class PlaceholderLLM(OfflineLLM):
    def write_scenarios(self, request):
        text = json.dumps([{"scenario": f"Generic scenario {i} at difficulty {request.difficulty}",
                            "expected_concepts": ["general knowledge"], "difficulty": request.difficulty}
                           for i in range(request.count)])
        return super().write_scenarios(request).model_copy(update={"text": text})


def test_persistently_broken_output_fails_instead_of_padding():
    with pytest.raises(ScenarioGenerationError, match=r"offline writer: skill skill-42 difficulty \d+: 0 valid .* after 3 attempts"):
        PlaceholderLLM(max_attempts=3).generate([SKILL])
