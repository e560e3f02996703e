"""The policy around scenario-writing calls: concurrency, asking again until valid, slots.

Written against a ``ScenarioWriter`` — any callable turning one ``ScenarioRequest`` into an
``LLMReply`` (a resource's ``write_scenarios``, or a plain function in a test) — so it imports no
Dagster and no SDK. For each difficulty of each skill the writer is asked for the scenarios still
missing, with the ones already accepted listed so it writes different ones; a reply that is
invalid or short is asked again for the rest, up to ``max_attempts`` calls, then the whole call
fails. Nothing is padded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Callable, Mapping, NamedTuple, Protocol

from pydantic import BaseModel

from skill_pipeline.core.budget import BudgetExceeded
from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    ScenarioParseError,
    SyntheticScenario,
    parse_scenarios_partial,
    synthetic_item_key,
)
from skill_pipeline.models import (
    DIFFICULTY_LEVELS,
    SCENARIOS_PER_DIFFICULTY,
    LLMReply,
    Scenario,
    ScenarioRequest,
    Skill,
    TokenUsage,
)


class ScenarioWriter(Protocol):
    """One call: the scenarios asked for by ``request``, as the model's raw reply."""

    def __call__(self, request: ScenarioRequest) -> LLMReply: ...


DifficultyDone = Callable[[str, int, list["SyntheticScenario"]], None]
"""``on_difficulty_done(skill_id, difficulty, scenarios)``: called once per difficulty as soon as its new
scenarios are valid (only the newly written ones), so the caller can store them before the rest finish."""


class ScenarioGenerationError(RuntimeError):
    """An LLM call for a skill failed for good: names the service, the skill and the difficulty
    (``skill_id`` too, so that a caller writing many skills can set the failed one aside)."""

    def __init__(self, message: str, skill_id: str | None = None) -> None:
        super().__init__(message)
        self.skill_id = skill_id


class SkillGeneration(BaseModel):
    skill_id: str
    rows: list[SyntheticScenario]
    usage: TokenUsage
    calls: int
    generator: str
    model: str


class DifficultyResult(NamedTuple):
    """The scenarios of one difficulty (kept ones first), what the calls cost, how many, which model."""

    scenarios: list[Scenario]
    usage: TokenUsage
    calls: int
    model: str


def generate_scenarios(
    write: ScenarioWriter,
    skills: list[Skill],
    keep: Mapping[str, list[SyntheticScenario]] | None = None,
    *,
    generator: str,
    model: str,
    service: str,
    max_concurrency: int,
    max_attempts: int,
    on_difficulty_done: DifficultyDone | None = None,
) -> dict[str, SkillGeneration]:
    """Scenarios for every difficulty of every skill, all calls under one concurrency bound.

    Ten difficulties of a skill (and the difficulties of several skills) are in flight at once,
    so a skill costs about one LLM latency, not ten. ``keep`` holds scenarios a skill already
    has (its pool): only the missing slots are asked for. ``on_difficulty_done`` is called (on
    the caller's thread, one at a time) with each difficulty's new scenarios as soon as they are
    valid. The first failure cancels what has not started; calls already in flight are waited
    for and handed to ``on_difficulty_done`` too (nothing paid for is thrown away), then the whole
    call fails. ``generator``/``model`` label the rows (``model`` until a reply names its own);
    ``service`` names the writer in error messages.
    """
    keep = keep or {}
    by_id = {skill.id: skill for skill in skills}
    kept: dict[tuple[str, int], list[SyntheticScenario]] = {}
    for skill in skills:
        for row in keep.get(skill.id, []):
            kept.setdefault((skill.id, row.difficulty), []).append(row)
    tasks = [
        (skill, d)
        for skill in skills
        for d in DIFFICULTY_LEVELS
        if len(kept.get((skill.id, d), [])) < SCENARIOS_PER_DIFFICULTY
    ]
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: dict[tuple[str, int], DifficultyResult] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(tasks)))) as pool:
        futures = {
            pool.submit(
                ask_until_valid,
                write,
                skill,
                d,
                kept.get((skill.id, d), []),
                service=service,
                model=model,
                max_attempts=max_attempts,
            ): (skill.id, d)
            for skill, d in tasks
        }
        for future in as_completed(futures):
            if future.cancelled():
                continue
            key = futures[future]
            if future.exception() is not None:
                if failure is None:
                    failure = future.exception()
                    for other in futures:
                        other.cancel()
                partial = getattr(future.exception(), "partial", None)
                if isinstance(partial, DifficultyResult) and on_difficulty_done is not None:
                    # Stopped by the budget after some scenarios of this difficulty were paid for: keep them.
                    rows = _difficulty_rows(by_id[key[0]], key[1], kept.get(key, []), partial,
                                            generator=generator, created_at=created_at)
                    if rows:
                        on_difficulty_done(key[0], key[1], rows)
                continue
            results[key] = future.result()
            if on_difficulty_done is not None:
                skill_id, difficulty = key
                new_rows = _difficulty_rows(
                    by_id[skill_id], difficulty, kept.get(key, []), results[key],
                    generator=generator, created_at=created_at,
                )
                on_difficulty_done(skill_id, difficulty, new_rows)
    if failure is not None:
        raise failure
    return {
        skill.id: _assemble(skill, kept, results, generator=generator, model=model, created_at=created_at)
        for skill in skills
    }


def _difficulty_rows(
    skill: Skill,
    difficulty: int,
    existing: list[SyntheticScenario],
    result: DifficultyResult,
    *,
    generator: str,
    created_at: str,
) -> list[SyntheticScenario]:
    """The new scenarios of one difficulty, placed in the slots ``existing`` leaves free."""
    taken = {r.slot for r in existing[:SCENARIOS_PER_DIFFICULTY]}
    free = [s for s in range(1, SCENARIOS_PER_DIFFICULTY + 1) if s not in taken]
    kept_count = min(len(existing), SCENARIOS_PER_DIFFICULTY)
    return [
        SyntheticScenario(
            item_key=synthetic_item_key(difficulty, slot),
            slot=slot,
            difficulty=difficulty,
            scenario=scenario.scenario,
            expected_concepts=scenario.expected_concepts,
            generator=generator,
            model=result.model,
            prompt_version=SCENARIO_PROMPT_VERSION,
            skill_fingerprint=skill.fingerprint,
            created_at=created_at,
        )
        for slot, scenario in zip(free, result.scenarios[kept_count:])
    ]


def _assemble(
    skill: Skill,
    kept: Mapping[tuple[str, int], list[SyntheticScenario]],
    results: Mapping[tuple[str, int], DifficultyResult],
    *,
    generator: str,
    model: str,
    created_at: str,
) -> SkillGeneration:
    """One skill's rows: kept scenarios in their slots, new ones in the free slots, by difficulty."""
    rows: list[SyntheticScenario] = []
    usage, calls = TokenUsage(), 0
    for difficulty in DIFFICULTY_LEVELS:
        existing = sorted(kept.get((skill.id, difficulty), []), key=lambda r: r.slot)
        rows += existing[:SCENARIOS_PER_DIFFICULTY]
        if (skill.id, difficulty) not in results:
            continue
        result = results[(skill.id, difficulty)]
        usage, calls, model = usage + result.usage, calls + result.calls, result.model
        rows += _difficulty_rows(skill, difficulty, existing, result, generator=generator, created_at=created_at)
    rows.sort(key=lambda r: (r.difficulty, r.slot))
    return SkillGeneration(skill_id=skill.id, rows=rows, usage=usage, calls=calls, generator=generator, model=model)


def ask_until_valid(
    write: ScenarioWriter,
    skill: Skill,
    difficulty: int,
    existing: list[SyntheticScenario],
    *,
    service: str,
    model: str,
    max_attempts: int,
) -> DifficultyResult:
    """Call ``write`` until ``difficulty`` has its scenarios, asking each time only for what is missing.

    A failed call is not retried here (the adapter has already retried what is worth retrying):
    it fails with ``ScenarioGenerationError``, as does a difficulty still short after
    ``max_attempts`` calls.
    """
    accepted: list[Scenario] = [
        Scenario(scenario=r.scenario, expected_concepts=r.expected_concepts, difficulty=r.difficulty)
        for r in existing
    ]
    usage = TokenUsage()
    problems: list[str] = []
    for attempt in range(1, max_attempts + 1):
        request = ScenarioRequest(
            skill=skill,
            difficulty=difficulty,
            count=SCENARIOS_PER_DIFFICULTY - len(accepted),
            avoid=[s.scenario for s in accepted],
            attempt=attempt,
        )
        try:
            reply = write(request)
        except BudgetExceeded as exc:
            # Refused before calling: the run stops, naming the budget; what this difficulty already
            # got from earlier attempts was paid for and goes with the error to be pooled.
            exc.partial = DifficultyResult(accepted, usage, attempt - 1, model)
            raise
        except Exception as exc:  # the adapter has already retried what is worth retrying
            raise ScenarioGenerationError(
                f"{service}: call for skill {skill.id} difficulty {difficulty} failed: "
                f"{type(exc).__name__}: {exc}",
                skill_id=skill.id,
            ) from exc
        usage, model = usage + reply.usage, reply.model
        try:
            scenarios, problems = parse_scenarios_partial(reply.text, difficulty)
        except ScenarioParseError as exc:
            scenarios, problems = [], [str(exc)]
        seen = {s.scenario.casefold() for s in accepted}
        for scenario in scenarios:
            if scenario.scenario.casefold() not in seen and len(accepted) < SCENARIOS_PER_DIFFICULTY:
                accepted.append(scenario)
                seen.add(scenario.scenario.casefold())
        if len(accepted) == SCENARIOS_PER_DIFFICULTY:
            return DifficultyResult(accepted, usage, attempt, model)
    raise ScenarioGenerationError(
        f"{service}: skill {skill.id} difficulty {difficulty}: {len(accepted)} valid scenarios of "
        f"{SCENARIOS_PER_DIFFICULTY} after {max_attempts} attempts ({'; '.join(problems)[:500]})",
        skill_id=skill.id,
    )
