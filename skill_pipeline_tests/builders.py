"""Test data built the same way everywhere: a full synthetic pool and eligible candidates.

The benchmarks use these too, so a change of the models is mended in one place.
"""

from __future__ import annotations

import hashlib
from typing import Any

from skill_pipeline.core.generation import SCENARIO_PROMPT_VERSION, SyntheticScenario, synthetic_item_key
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, Candidate, Skill
from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore


def synthetic_pool(
    skill: Skill,
    scenario: str = "A data analyst writes report query {difficulty}-{slot} for the finance team before month end",
    concepts: tuple[str, ...] = ("GROUP BY aggregation", "window functions over partition {slot}"),
    **fields: Any,
) -> list[SyntheticScenario]:
    """5 scenarios per difficulty; ``scenario`` and ``concepts`` are formatted with difficulty and slot."""
    defaults: dict[str, Any] = {
        "generator": "offline",
        "model": "offline-writer-v1",
        "prompt_version": SCENARIO_PROMPT_VERSION,
        "skill_fingerprint": skill.fingerprint,
        "created_at": "2024-03-01T00:00:00+00:00",
    }
    defaults.update(fields)
    return [
        SyntheticScenario(
            item_key=synthetic_item_key(difficulty, slot),
            slot=slot,
            difficulty=difficulty,
            scenario=scenario.format(difficulty=difficulty, slot=slot),
            expected_concepts=[c.format(difficulty=difficulty, slot=slot) for c in concepts],
            **defaults,
        )
        for difficulty in DIFFICULTY_LEVELS
        for slot in range(1, SCENARIOS_PER_DIFFICULTY + 1)
    ]


def topic_words(key: str, n: int = 5) -> str:
    """``n`` made-up words derived from ``key``: questions built around them are distinct items
    (no near duplicates: composition promotes a reworded question only once)."""
    digest = hashlib.sha256(key.encode()).digest()
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    return " ".join(
        "".join(consonants[digest[(3 * w + k) % 32] % 16] + vowels[digest[(5 * w + 2 * k + 1) % 32] % 5] for k in range(3))
        for w in range(n)
    )


def candidate(challenge_id: str, difficulty: int, **fields: Any) -> Candidate:
    """An eligible real-world challenge with plausible metrics; ``fields`` override any of them."""
    values: dict[str, Any] = {
        "question": f"Which clause filters groups after aggregation in report {challenge_id} on "
        f"{topic_words(challenge_id)}?",
        "options": ["HAVING", "WHERE", "ORDER BY", "LIMIT"],
        "correct_option": 0,
        "explanation": "HAVING filters groups; WHERE filters rows before grouping.",
        "answer_count": 9,
        "correct_rate": 0.8,
        "response_time_score": 0.7,
        "user_confidence": 0.6,
        "judge_composite_score": 0.9,
        "eligible": True,
    }
    values.update(fields)
    return Candidate(challenge_id=challenge_id, difficulty=difficulty, **values)


def opik_store(fake: Any, project_name: str = "skill-pipeline", **overrides: Any) -> OpikDatasetStore:
    """An ``OpikDatasetStore`` pointed at the loopback Opik fake, with short retry waits."""
    from skill_pipeline_tests.fakes.opik_server import OPIK_TEST_API_KEY, OPIK_TEST_WORKSPACE

    settings: dict[str, Any] = {
        "url": fake.url,
        "api_key": OPIK_TEST_API_KEY,
        "workspace": OPIK_TEST_WORKSPACE,
        "project_name": project_name,
        "write_timeout_seconds": 20,
        "retry_backoff_seconds": 0.01,
    }
    settings.update(overrides)
    return OpikDatasetStore(**settings)
