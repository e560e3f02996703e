"""The policy around scenario-writing calls: concurrency, asking again until valid, slots.

Written against a ``ScenarioWriter`` — any callable turning one ``ScenarioRequest`` into an
``LLMReply`` (a resource's ``write_scenarios``, or a plain function in a test) — so it imports no
Dagster and no SDK. For each difficulty of each skill the writer is asked for the scenarios still
missing, with the ones already accepted listed so it writes different ones; a reply that is
invalid or short is asked again for the rest, up to ``max_attempts`` calls, then the whole call
fails. Nothing is padded.

A new scenario that is a near duplicate (``core.near_duplicates``: rapidfuzz token-set ratio ≥ 90)
of a live text of its skill is dropped and asked for again, like an invalid one. Live texts: the
skill's kept scenarios at every difficulty, the texts the caller passes (the dataset's real-world
items), and every new scenario accepted so far for the skill at any difficulty. The ten
difficulties of a skill are written concurrently, so they share one ``LiveTexts`` and admit new
scenarios under its lock: two concurrent difficulties can never both accept a pair of near
duplicates (which of the two keeps it depends on which reply arrives first). Why drop rather than
keep: a reworded copy counts one question twice in an experiment and narrows its error bars on
nothing. Dropped texts are listed in the next request's ``avoid``, so the writer does not repeat them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, NamedTuple, Protocol

from pydantic import BaseModel

from skill_pipeline.core.budget import BudgetExceeded
from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    ScenarioParseError,
    SyntheticScenario,
    parse_scenarios_partial,
    synthetic_item_key,
)
from skill_pipeline.core.near_duplicates import DEFAULT_THRESHOLD, filter_new
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
    near_duplicates_dropped: int = 0


class DifficultyResult(NamedTuple):
    """The scenarios of one difficulty (kept ones first), what the calls cost, how many, which model,
    and how many new scenarios were dropped as near duplicates of live texts."""

    scenarios: list[Scenario]
    usage: TokenUsage
    calls: int
    model: str
    near_duplicates_dropped: int = 0


class LiveTexts:
    """The texts a skill's new scenarios must not near-duplicate, shared by its difficulties' threads."""

    def __init__(self, texts: Iterable[str] = (), threshold: float = DEFAULT_THRESHOLD):
        self._texts = [t for t in texts if t]
        self._threshold = threshold
        self._lock = threading.Lock()

    def admit(self, candidates: list[str], limit: int) -> tuple[list[int], list[str]]:
        """``(admitted positions, dropped texts)``: at most ``limit`` candidates that are not near
        duplicates of a live text or of an earlier candidate; the admitted ones become live."""
        with self._lock:
            kept, rejected = filter_new(candidates, self._texts, self._threshold)
            kept = kept[: max(0, limit)]
            self._texts += [candidates[i] for i in kept]
        return kept, rejected["candidate_text"].astype(str).tolist()

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return list(self._texts)


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
    live: Mapping[str, list[str]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, SkillGeneration]:
    """Scenarios for every difficulty of every skill, all calls under one concurrency bound.

    Ten difficulties of a skill (and the difficulties of several skills) are in flight at once,
    so a skill costs about one LLM latency, not ten. ``keep`` holds scenarios a skill already
    has (its pool): only the missing slots are asked for. ``on_difficulty_done`` is called (on
    the caller's thread, one at a time) with each difficulty's new scenarios as soon as they are
    valid. The first failure cancels what has not started; calls already in flight are waited
    for and handed to ``on_difficulty_done`` too (nothing paid for is thrown away), then the whole
    call fails. ``generator``/``model`` label the rows (``model`` until a reply names its own);
    ``service`` names the writer in error messages. ``live`` holds, per skill, texts of live items
    besides ``keep`` (the dataset's real-world items) that new scenarios must not near-duplicate
    (``threshold``: token-set ratio, module docstring).
    """
    keep = keep or {}
    live = live or {}
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
    live_texts = {
        skill.id: LiveTexts([r.scenario for r in keep.get(skill.id, [])] + list(live.get(skill.id, [])), threshold)
        for skill in skills
    }
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
                live=live_texts[skill.id],
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
    usage, calls, dropped = TokenUsage(), 0, 0
    for difficulty in DIFFICULTY_LEVELS:
        existing = sorted(kept.get((skill.id, difficulty), []), key=lambda r: r.slot)
        rows += existing[:SCENARIOS_PER_DIFFICULTY]
        if (skill.id, difficulty) not in results:
            continue
        result = results[(skill.id, difficulty)]
        usage, calls, model = usage + result.usage, calls + result.calls, result.model
        dropped += result.near_duplicates_dropped
        rows += _difficulty_rows(skill, difficulty, existing, result, generator=generator, created_at=created_at)
    rows.sort(key=lambda r: (r.difficulty, r.slot))
    return SkillGeneration(
        skill_id=skill.id, rows=rows, usage=usage, calls=calls, generator=generator, model=model,
        near_duplicates_dropped=dropped,
    )


def ask_until_valid(
    write: ScenarioWriter,
    skill: Skill,
    difficulty: int,
    existing: list[SyntheticScenario],
    *,
    service: str,
    model: str,
    max_attempts: int,
    live: LiveTexts | None = None,
) -> DifficultyResult:
    """Call ``write`` until ``difficulty`` has its scenarios, asking each time only for what is missing.

    A new scenario that is a near duplicate of a text in ``live`` (default: ``existing``) or of
    another new one is dropped and asked for again (module docstring). A failed call is not
    retried here (the adapter has already retried what is worth retrying): it fails with
    ``ScenarioGenerationError``, as does a difficulty still short after ``max_attempts`` calls.
    """
    accepted: list[Scenario] = [
        Scenario(scenario=r.scenario, expected_concepts=r.expected_concepts, difficulty=r.difficulty)
        for r in existing
    ]
    live = live if live is not None else LiveTexts([s.scenario for s in accepted])
    usage = TokenUsage()
    problems: list[str] = []
    dropped: list[str] = []
    for attempt in range(1, max_attempts + 1):
        request = ScenarioRequest(
            skill=skill,
            difficulty=difficulty,
            count=SCENARIOS_PER_DIFFICULTY - len(accepted),
            avoid=[s.scenario for s in accepted] + dropped,
            attempt=attempt,
        )
        try:
            reply = write(request)
        except BudgetExceeded as exc:
            # Refused before calling: the run stops, naming the budget; what this difficulty already
            # got from earlier attempts was paid for and goes with the error to be pooled.
            exc.partial = DifficultyResult(accepted, usage, attempt - 1, model, len(dropped))
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
        admitted, duplicates = live.admit([s.scenario for s in scenarios], SCENARIOS_PER_DIFFICULTY - len(accepted))
        accepted += [scenarios[i] for i in admitted]
        dropped += duplicates
        if duplicates:
            problems.append(f"{len(duplicates)} near duplicates of live scenarios dropped")
        if len(accepted) == SCENARIOS_PER_DIFFICULTY:
            return DifficultyResult(accepted, usage, attempt, model, len(dropped))
    raise ScenarioGenerationError(
        f"{service}: skill {skill.id} difficulty {difficulty}: {len(accepted)} valid scenarios of "
        f"{SCENARIOS_PER_DIFFICULTY} after {max_attempts} attempts ({'; '.join(problems)[:500]})",
        skill_id=skill.id,
    )
