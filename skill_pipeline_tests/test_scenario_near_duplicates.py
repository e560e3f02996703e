"""Near-duplicate filtering in scenario writing: dropped, asked for again, counted; and the offline
writer's output has no near-duplicate pair at any difficulty."""

from __future__ import annotations

import itertools
import json
import random
import threading

import pytest
from rapidfuzz import fuzz, utils

from skill_pipeline.core.scenario_writing import ScenarioGenerationError, ask_until_valid, generate_scenarios
from skill_pipeline.demo.seed import DEMO_SKILLS
from skill_pipeline.models import DIFFICULTY_LEVELS, LLMReply, ScenarioRequest, Skill
from skill_pipeline.resources.llm_offline import OfflineLLM

SKILL = Skill(id="skill-nd", name="SQL Querying", description="joins, aggregation, window functions, indexes")

# Ten topics with no words in common beyond the frame: pairwise token-set ratio well under 90.
TOPICS = [
    "an inner join silently drops customers without orders",
    "a GROUP BY total double counts refunded invoices",
    "a window function ranks tied salaries inconsistently",
    "a missing index turns the nightly export into a full scan",
    "a correlated subquery times out on the reporting replica",
    "NULL comparisons hide rows from the churn dashboard",
    "a LEFT JOIN filter in WHERE behaves like an INNER JOIN",
    "duplicate keys in a staging table inflate monthly revenue",
    "a query plan switches to nested loops after statistics refresh",
    "HAVING versus WHERE changes which regions appear",
]


def _fresh(seed: int) -> str:
    """A scenario of made-up words: shares nothing but its frame with any other seed's."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(8)]
    return "A learner meets " + " ".join(words) + "."


def _score(a: str, b: str) -> float:
    return fuzz.token_set_ratio(a, b, processor=utils.default_process)


def _reply(texts: list[str], difficulty: int) -> LLMReply:
    rows = [{"scenario": t, "expected_concepts": ["joins"], "difficulty": difficulty} for t in texts]
    return LLMReply(text=json.dumps(rows), model="m", generator="offline")


def _pairs_at_or_over(texts: list[str], threshold: float = 90.0) -> list[tuple[str, str, float]]:
    return [(a, b, s) for a, b in itertools.combinations(texts, 2) if (s := _score(a, b)) >= threshold]


def test_a_reworded_repeat_is_dropped_asked_for_again_and_counted() -> None:
    first = [f"An analyst finds that {t}." for t in TOPICS[:4]]
    reworded = "An analyst finds that, surprisingly, an inner join silently drops customers without orders."
    assert _score(first[0], reworded) >= 90  # the rewording IS a near duplicate
    requests: list[ScenarioRequest] = []

    def write(request: ScenarioRequest) -> LLMReply:
        requests.append(request)
        if request.attempt == 1:
            return _reply(first + [reworded], request.difficulty)
        return _reply([reworded, f"An analyst finds that {TOPICS[4]}."], request.difficulty)

    result = ask_until_valid(write, SKILL, 3, [], service="s", model="m", max_attempts=2)
    texts = [s.scenario for s in result.scenarios]
    assert texts == first + [f"An analyst finds that {TOPICS[4]}."]
    assert result.calls == 2 and result.near_duplicates_dropped == 2  # once per reply that repeated it
    assert requests[1].count == 1 and reworded in requests[1].avoid  # asked again, told what to avoid
    assert not _pairs_at_or_over(texts)


def test_only_near_duplicates_left_fails_after_max_attempts_naming_them() -> None:
    def write(request: ScenarioRequest) -> LLMReply:
        return _reply([f"An analyst finds that {TOPICS[0]} (take {request.attempt}, copy {i})." for i in range(5)], 2)

    with pytest.raises(ScenarioGenerationError, match="1 valid scenarios of 5 after 2 attempts.*near duplicates"):
        ask_until_valid(write, SKILL, 2, [], service="s", model="m", max_attempts=2)


def test_new_scenarios_are_checked_against_live_items_and_across_difficulties() -> None:
    live_question = "Why does an inner join silently drop customers without orders?"
    lock = threading.Lock()
    calls: list[tuple[int, int]] = []

    def write(request: ScenarioRequest) -> LLMReply:
        with lock:
            calls.append((request.difficulty, request.attempt))
        d = request.difficulty
        if request.attempt == 1:
            # Every difficulty's first reply: the live question reworded, and a scenario that is the
            # same at difficulties 1 and 2 (one of the two must go), then fresh ones.
            shared = "A support engineer notices a GROUP BY total double counts refunded invoices." if d <= 2 else None
            texts = [f"At level {d}: {live_question.rstrip('?')}."]
            texts += [shared] if shared else []
            texts += [_fresh(d * 100 + k) for k in range(5)]
            return _reply(texts[:5], d)
        return _reply([_fresh(d * 100 + 10 * request.attempt + k) for k in range(request.count)], d)

    skill = SKILL.model_copy(update={"id": "skill-live"})
    generated = generate_scenarios(
        write, [skill], generator="offline", model="m", service="s", max_concurrency=4, max_attempts=3,
        live={skill.id: [live_question]},
    )[skill.id]
    texts = [r.scenario for r in generated.rows]
    assert len(texts) == 50
    assert all(_score(t, live_question) < 90 for t in texts)
    # Ten rewordings of the live question dropped, one of the two copies of the shared scenario.
    assert generated.near_duplicates_dropped >= 11
    assert sum(t.startswith("A support engineer") for t in texts) == 1
    assert {d for d, attempt in calls if attempt == 2} == set(DIFFICULTY_LEVELS)  # each asked again
    assert not _pairs_at_or_over(texts)


def _offline_texts(skill: Skill) -> list[str]:
    llm = OfflineLLM()
    texts: list[str] = []
    for d in DIFFICULTY_LEVELS:
        reply = llm.write_scenarios(ScenarioRequest(skill=skill, difficulty=d, count=5))
        assert reply.generator == "offline" and reply.model == "offline-writer-v1"
        rows = json.loads(reply.text)
        assert len(rows) == 5 and all(r["difficulty"] == d for r in rows)
        texts += [r["scenario"] for r in rows]
    return texts


SKILLS = [Skill(id=f"skill-{k}-{i}", name=name, description=description)
          for k in range(3)
          for i, (name, description) in enumerate(
              [(n, d) for n, d, _ in DEMO_SKILLS]
              + [("Payroll reconciliation", "Matching payroll ledgers against bank exports"),
                 ("Git version control", "Branching, merging and merge conflicts."), ("Cooking", ""), ("SQL", "")])]


@pytest.mark.parametrize("skill", SKILLS, ids=lambda s: s.id)
def test_offline_output_has_no_near_duplicate_pair_at_any_difficulty(skill: Skill) -> None:
    texts = _offline_texts(skill)
    assert len(set(texts)) == 50
    assert not _pairs_at_or_over(texts)
    assert texts == _offline_texts(skill)  # deterministic


def test_offline_writer_asked_again_writes_new_scenarios_that_are_no_near_duplicates() -> None:
    llm = OfflineLLM()
    first = json.loads(llm.write_scenarios(ScenarioRequest(skill=SKILL, difficulty=10, count=5)).text)
    written = [r["scenario"] for r in first]  # three accepted, two dropped by the pipeline: all avoided
    again = json.loads(
        llm.write_scenarios(ScenarioRequest(skill=SKILL, difficulty=10, count=2, avoid=written, attempt=2)).text
    )
    assert len(again) == 2 and not {r["scenario"] for r in again} & set(written)
    everything = written[:3] + [r["scenario"] for r in again]
    assert not _pairs_at_or_over(everything)


def test_offline_generation_with_one_attempt_completes_every_difficulty() -> None:
    """The failure the issue names: with max_attempts=1 a single near duplicate fails the run."""
    generated = OfflineLLM(max_attempts=1).generate([SKILL])[SKILL.id]
    assert len(generated.rows) == 50 and generated.near_duplicates_dropped == 0
    assert {r.generator for r in generated.rows} == {"offline"}
    assert not _pairs_at_or_over([r.scenario for r in generated.rows])


class RepeatingLLM(OfflineLLM):
    """The offline writer, but its first reply at each difficulty repeats one scenario reworded."""

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        reply = super().write_scenarios(request)
        if request.attempt > 1:
            return reply
        rows = json.loads(reply.text)
        rows[-1] = {**rows[0], "scenario": "Indeed, " + rows[0]["scenario"]}
        return reply.model_copy(update={"text": json.dumps(rows)})


def test_synthetic_scenarios_asks_again_for_dropped_duplicates_and_says_how_many(tmp_path) -> None:
    import dagster as dg

    from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

    resources = local_resources(tmp_path, llm=RepeatingLLM())
    with dg.instance_for_test() as instance:
        skill_id = tick(instance, resources, cursor=None).run_requests[0].partition_key
        result = materialize_skill(instance, resources, skill_id, selection=["synthetic_scenarios"])
    meta = metadata(result, "synthetic_scenarios")
    assert meta["near_duplicates_dropped"] == 10  # one per difficulty, each asked for again
    assert meta["llm_calls"] == 20 and meta["scenarios"] == 50
    pool = resources["dataset_store"].read_pool(skill_id)
    assert len(pool) == 50 and not _pairs_at_or_over([r.scenario for r in pool])
