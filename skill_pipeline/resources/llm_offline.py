"""OfflineLLM: the embedded default writer — deterministic, skill-specific, no network.

Scenarios (``offline_scenarios``): a different sentence frame, situation, task and concepts per
scenario and difficulty, taken from the skill's own description (``concepts_from_skill``), no two of
a skill near duplicates, labelled ``generator: offline`` everywhere they land; the pipeline refuses
to write them to a real Opik.

Challenges and the difficulty judge, for ``prompt_experiment``, are stand-ins too. They let it
run locally with the same task, parser and metrics as production, and — the point — they let two
prompt versions score differently, because the offline challenge writer
*follows the prompt it is given* in ways the metrics can see. Its rules, read from the rendered
prompt text only (case-insensitive):

- ``exactly N ... options`` → N options; no such instruction → 3 (an unguided writer's habit);
- the word ``explanation`` → an explanation naming what the correct option applies; else none;
- the quoted key ``"difficulty"`` → a stated difficulty, the one the prompt asks for
  (``difficulty N/10``); else no difficulty field;
- the item's scenario, if the prompt contains it verbatim → the question is set in it; else a
  generic question about the skill;
- each of the item's expected concepts that the prompt contains verbatim → named in the question,
  the correct option and the explanation; concepts the prompt does not mention are not used;
- ``between A and B characters`` → the scenario context is shortened to keep the question in bounds.

The offline judge (``offline_judge_difficulty``) is a stand-in for an LLM judge, not a judgement:
it takes the difficulty the writer stated (a real judge is never shown it), one point lower when
the challenge has fewer than four options (fewer distractors, easier to guess), and without a
stated difficulty falls back to the question's length (1 + words // 10). Its quality ratings
(``offline_ratings``) read the challenge text only, as a judge would, by rules a reviewer can check:

- ``single_correct_answer``: the key is well formed (one valid index, distinct non-empty options) and
  the challenge gives grounds to prefer it: an explanation of 5+ words or a question of 12+ words
  that sets a situation. A bare "which statement about X is correct?" with generic options has none;
- ``distractor_plausibility`` (1–5): 1 + the wrong options that share a content word with the
  question (at most 3: they are about what is asked, not off-topic) + 1 for three or more of them;
- ``requires_skill`` (1–5): 1 + 2 for a question of 12+ words (a situation to reason about) + 1 when
  it names a concept of the skill's description beyond the skill's name + 1 for an explanation.

So v1 (scenario, concepts, four options, explanation) rates high and v0-terse (none of them) low,
for reasons that are visible in the challenge. Everything it writes is labelled offline by the
resource that wraps it (``generator: offline``, the model names below).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import Field

from skill_pipeline.core.challenge_prompt import Challenge, ChallengeRequest, DifficultyJudgeRequest
from skill_pipeline.models import LLMReply, ScenarioRequest, TokenUsage
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.offline_scenarios import _STOP, concepts_from_skill, offline_scenarios  # noqa: F401

# ---------------------------------------------------------------------------------------------
# Challenges and the difficulty judge (experiments)
# ---------------------------------------------------------------------------------------------

OFFLINE_CHALLENGE_MODEL = "offline-challenge-writer-v1"
OFFLINE_JUDGE_MODEL = "offline-difficulty-judge-v1"

# Options an unguided writer produces: fewer than the four an MCQ needs.
UNGUIDED_OPTION_COUNT = 3

_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_OPTION_COUNT_RE = re.compile(r"exactly\s+(\d+|two|three|four|five|six)\s+(?:[a-z-]+\s+){0,2}options")
_BOUNDS_RE = re.compile(r"between\s+(\d+)\s+and\s+(\d+)\s+characters")
_DIFFICULTY_RE = re.compile(r"difficulty[^0-9\n]{0,20}(\d{1,2})\s*/\s*10")


def _asked_option_count(prompt: str) -> int:
    match = _OPTION_COUNT_RE.search(prompt)
    if not match:
        return UNGUIDED_OPTION_COUNT
    word = match.group(1)
    count = int(word) if word.isdigit() else _NUMBER_WORDS[word]
    return max(2, min(count, 6))


def _join(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with an ellipsis if cut)."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return cut + "…" if cut else ""


def offline_write_challenge(request: ChallengeRequest) -> str:
    """JSON text of a challenge written by following ``request.prompt`` (rules in the module docstring)."""
    prompt = request.prompt.casefold()
    item = request.item
    skill = str(item.input.get("skill_name") or "the skill")
    scenario = str(item.input.get("scenario") or "").strip()
    concepts = [
        str(c).strip()
        for c in item.input.get("expected_concepts") or []
        if str(c).strip() and str(c).strip().casefold() in prompt
    ]
    use_scenario = bool(scenario) and scenario.casefold() in prompt
    option_count = _asked_option_count(prompt)
    wants_explanation = "explanation" in prompt
    wants_difficulty = '"difficulty"' in prompt
    bounds = _BOUNDS_RE.search(prompt)
    max_length = int(bounds.group(2)) if bounds else None

    focus = _join(concepts) if concepts else f"established {skill} practice"
    if use_scenario:
        if scenario.endswith("?") and not concepts:
            question = scenario  # the scenario is a question already (real-world items)
        else:
            ask = "Which option is the best answer?"
            if concepts:
                ask = f"Which option best applies {_join(concepts)} here?"
            context = scenario
            if max_length is not None:
                context = _shorten(context, max_length - len(ask) - 1)
                if len(context) < 20:  # a stub of context reads worse than none
                    context = ""
            question = f"{context} {ask}".strip()
        if max_length is not None and len(question) > max_length:
            question = _shorten(question, max_length)
    else:
        question = f"Which statement about {skill} is correct?"

    correct = f"Apply {focus} in a way that fits the situation described"
    anchor = concepts[0] if concepts else "the established practice"
    distractors = [
        f"Skip {anchor} and rely on default settings",
        f"Apply {anchor} only after the problem has been escalated",
        f"Treat {anchor} as irrelevant to this situation",
        "Copy the approach of an unrelated field without adapting it",
        "Wait for more information before doing anything",
    ]
    seed = int(hashlib.sha256(f"{item.id}|{request.prompt_version}".encode()).hexdigest(), 16)
    correct_index = seed % option_count
    options = distractors[: option_count - 1]
    options.insert(correct_index, correct)

    challenge: dict[str, Any] = {"question": question, "options": options, "correct_index": correct_index}
    if wants_explanation:
        challenge["explanation"] = (
            f"The correct option applies {focus} to the situation; the others skip it, delay it until "
            f"it is too late, or ignore the context."
        )
    if wants_difficulty:
        match = _DIFFICULTY_RE.search(prompt)
        if match and 1 <= int(match.group(1)) <= 10:
            challenge["difficulty"] = int(match.group(1))
    return json.dumps(challenge, ensure_ascii=False)


def offline_difficulty(challenge: Challenge) -> tuple[int, str]:
    """The stand-in estimate and the reason for it (see the module docstring)."""
    if challenge.difficulty is not None:
        estimate, basis = challenge.difficulty, f"the writer's stated difficulty {challenge.difficulty}"
    else:
        words = len(challenge.question.split())
        estimate, basis = 1 + words // 10, f"question length ({words} words, no stated difficulty)"
    if len(challenge.options) < 4:
        estimate -= 1
        basis += f", minus 1 for only {len(challenge.options)} options"
    estimate = max(1, min(10, estimate))
    return estimate, f"offline stand-in judge: {basis}"


_GENERIC = {"which", "option", "options", "correct", "statement", "best", "answer", "here", "apply", "applies",
            "this", "that", "there", "what", "when", "must", "learner", "difficulty", "situation", "described"}


def _content_words(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z][a-z0-9+#'-]{3,}", text.casefold())}
    return words - _STOP - _GENERIC


def offline_ratings(challenge: Challenge, skill_name: str, skill_description: str = "") -> dict[str, Any]:
    """The stand-in judge's quality ratings (rules in the module docstring)."""
    options = challenge.options
    key_ok = (
        len(options) >= 2
        and 0 <= challenge.correct_index < len(options)
        and all(o.strip() for o in options)
        and len({o.strip().casefold() for o in options}) == len(options)
    )
    question_words = len(challenge.question.split())
    explained = len(challenge.explanation.split()) >= 5
    grounded = explained or question_words >= 12
    asked = _content_words(challenge.question)
    distractors = [o for i, o in enumerate(options) if i != challenge.correct_index]
    on_topic = sum(1 for o in distractors if _content_words(o) & asked)
    plausibility = 1 + min(3, on_topic) + (1 if len(distractors) >= 3 else 0)
    concepts = _content_words(skill_description) - _content_words(skill_name)
    needs = 1 + (2 if question_words >= 12 else 0) + (1 if asked & concepts else 0) + (1 if explained else 0)
    return {
        "single_correct_answer": bool(key_ok and grounded),
        "distractor_plausibility": max(1, min(5, plausibility)),
        "requires_skill": max(1, min(5, needs)),
    }


def offline_judge_difficulty(request: DifficultyJudgeRequest) -> str:
    """JSON text of the judge's reply: ``offline_difficulty`` and ``offline_ratings``."""
    estimate, reasoning = offline_difficulty(request.challenge)
    ratings = offline_ratings(request.challenge, request.skill_name, request.skill_description)
    return json.dumps({"difficulty": estimate, **ratings, "reasoning": reasoning}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# The resource
# ---------------------------------------------------------------------------------------------


class OfflineLLM(ScenarioLLM):
    """Deterministic, skill-specific scenarios without a network: the embedded default.

    Output is varied (a different situation, task and concept pair per scenario and difficulty) but
    labelled ``generator: offline`` everywhere it lands, and the pipeline refuses to write it to a
    real Opik.
    """

    model: str = Field(default="offline-writer-v1", description="label recorded as the model")

    @property
    def generator(self) -> str:
        return "offline"

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def service(self) -> str:
        return "offline writer"

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        """The skill's planned scenarios for the difficulty, none avoided, no two near duplicates
        (``offline_scenarios``: the variation is seeded by skill, difficulty and index)."""
        scenarios = offline_scenarios(request.skill, request.difficulty, request.count, request.avoid)
        text = json.dumps(scenarios, indent=2)
        usage = TokenUsage(input_tokens=0, output_tokens=0)
        return LLMReply(text=text, usage=usage, model=self.model, generator="offline")

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        return LLMReply(
            text=offline_write_challenge(request), model=OFFLINE_CHALLENGE_MODEL, generator="offline"
        )

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        return LLMReply(text=offline_judge_difficulty(request), model=OFFLINE_JUDGE_MODEL, generator="offline")
