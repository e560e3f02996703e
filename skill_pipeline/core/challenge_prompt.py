"""The challenge-generation prompt under test, in versions, and the difficulty judge's prompt.

``prompt_experiment`` runs one of these prompts over every item of a skill's dataset and scores
what comes back (``core.metrics``). A prompt version is its template: ``content_hash`` changes
whenever a character of it does, and that hash is the experiment asset's ``code_version``, so the
UI marks experiments out of date when the prompt changes, not when someone remembers to bump a
number. Versions are kept side by side (``PROMPTS``) so a candidate can be compared with the
current one on the same dataset.

``v0-terse`` is deliberately worse (it does not ask for the scenario, the concepts, an
explanation, four options or a stated difficulty): it exists to show that the regression check
catches a worse prompt. Never make it current.

The reply format is lenient on purpose: ``Challenge`` accepts any number of options and a missing
explanation, because judging those is the metrics' job. Only a reply that is not a challenge at
all (no JSON object, no question, options that are not strings...) is a parse error.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skill_pipeline.core.generation import (
    QUESTION_CHARACTERISTICS,
    ScenarioParseError,
    _extract_json,
    difficulty_guidance,
)
from skill_pipeline.models import DatasetItem, difficulty_range

# Fields a challenge template may use; ``render`` fills all of them from the dataset item.
TEMPLATE_FIELDS: frozenset[str] = frozenset(
    {
        "skill_name",
        "skill_description",
        "difficulty",
        "difficulty_low",
        "difficulty_high",
        "guidance",
        "scenario",
        "concepts",
        "min_length",
        "max_length",
        "option_count",
    }
)


class PromptVersion(BaseModel):
    """A named challenge-generation template. Its identity for caching and UI is ``content_hash``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    template: str = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _fields_known(self) -> "PromptVersion":
        # A typo in a template would otherwise surface as a KeyError mid-experiment, per item.
        used = {field for _, field, _, _ in string.Formatter().parse(self.template) if field}
        unknown = sorted(used - TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(
                f"prompt {self.name!r} uses unknown fields {unknown}; known: {sorted(TEMPLATE_FIELDS)}"
            )
        return self

    @property
    def content_hash(self) -> str:
        """First 12 hex digits of the template's sha256: the experiment asset's ``code_version``."""
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()[:12]

    @property
    def label(self) -> str:
        """Name and hash together, for metadata and experiment names (``v1-3f2a...``)."""
        return f"{self.name}-{self.content_hash}"


V1_TEMPLATE = """You are writing one multiple-choice challenge that tests a learner's skill.

SKILL: {skill_name}
DESCRIPTION: {skill_description}
DIFFICULTY: {difficulty}/10 (acceptable range {difficulty_low}-{difficulty_high})

For difficulty {difficulty}/10:
{guidance}

SCENARIO (set the question in this situation):
{scenario}

CONCEPTS TO COVER (name each one in the question, the options or the explanation):
{concepts}

Requirements:
- One clear question set in the scenario, between {min_length} and {max_length} characters.
- Exactly {option_count} answer options, all distinct and plausible; exactly one is correct.
- "correct_index" is the 0-based index of the correct option.
- An explanation of why the correct option is right and why the others are wrong.
- "difficulty": your honest estimate (1-10) of the question's difficulty; aim for {difficulty}.

OUTPUT FORMAT (strict JSON object, nothing else):
{{
  "question": "...",
  "options": ["...", "...", "...", "..."],
  "correct_index": 0,
  "explanation": "...",
  "difficulty": {difficulty}
}}"""

V0_TERSE_TEMPLATE = """Write a multiple-choice question about {skill_name} at difficulty {difficulty}/10.
Reply with JSON: {{"question": "...", "options": ["..."], "correct_index": 0}}"""

PROMPTS: dict[str, PromptVersion] = {
    p.name: p
    for p in (
        PromptVersion(
            name="v1",
            template=V1_TEMPLATE,
            description="scenario, concepts, difficulty guidance, 4 options, explanation, stated difficulty",
        ),
        PromptVersion(
            name="v0-terse",
            template=V0_TERSE_TEMPLATE,
            description="deliberately worse candidate: skill and difficulty only (regression-check demo)",
        ),
    )
}

CURRENT_PROMPT = "v1"


class UnknownPromptVersion(KeyError, ValueError):
    """A prompt version that is not in ``PROMPTS`` (a config typo): names it and the known ones."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else "unknown prompt version"


def get_prompt(name: str) -> PromptVersion:
    try:
        return PROMPTS[name]
    except KeyError:
        raise UnknownPromptVersion(
            f"unknown challenge prompt version {name!r}; known versions: {', '.join(sorted(PROMPTS))}"
        ) from None


def _concept_block(concepts: list[str]) -> str:
    if not concepts:
        return "(none listed: test the central idea of the scenario)"
    return "\n".join(f"- {c}" for c in concepts)


def render(prompt: PromptVersion | str, item: DatasetItem) -> str:
    """The prompt text for one dataset item (``prompt`` is a version or its name)."""
    version = get_prompt(prompt) if isinstance(prompt, str) else prompt
    data = item.input
    characteristics = {**QUESTION_CHARACTERISTICS, **(item.expected_output.get("question_characteristics") or {})}
    try:
        difficulty = int(data["difficulty"])
        skill_name = str(data["skill_name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"dataset item {item.id} ({item.item_key}) lacks a usable skill_name/difficulty for prompt "
            f"{version.name!r}: {exc!r}"
        ) from exc
    low, high = item.expected_output.get("difficulty_range") or difficulty_range(difficulty)
    return version.template.format(
        skill_name=skill_name,
        skill_description=str(data.get("skill_description") or "(no description)"),
        difficulty=difficulty,
        difficulty_low=low,
        difficulty_high=high,
        guidance=difficulty_guidance(difficulty),
        scenario=str(data.get("scenario") or "(no scenario)"),
        concepts=_concept_block([str(c) for c in data.get("expected_concepts") or []]),
        min_length=characteristics["min_length"],
        max_length=characteristics["max_length"],
        option_count=characteristics["option_count"],
    )


# JSON schema of the reply, for forced tool use / structured output. It does not fix the number of
# options or require an explanation: that is what the prompt under test must achieve, and what the
# metrics measure. A schema that enforced it would hide a worse prompt.
CHALLENGE_TOOL_NAME = "record_challenge"
CHALLENGE_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "the question shown to the learner"},
        "options": {"type": "array", "items": {"type": "string"}, "description": "answer options"},
        "correct_index": {"type": "integer", "description": "0-based index of the correct option"},
        "explanation": {"type": "string", "description": "why the correct option is right"},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["question", "options", "correct_index"],
}


class ChallengeParseError(ValueError):
    """The model's reply is not a challenge; the message says why (and how the reply starts)."""


class Challenge(BaseModel):
    """A generated multiple-choice challenge, as parsed. Quality is judged by the metrics, not here."""

    question: str
    options: list[str]
    correct_index: int
    explanation: str = ""
    difficulty: int | None = Field(default=None, ge=1, le=10)

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("question is empty")
        return value

    @field_validator("explanation", mode="before")
    @classmethod
    def _explanation(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("difficulty", mode="before")
    @classmethod
    def _difficulty(cls, value: Any) -> Any:
        # Only informational (the judge estimates difficulty): an unusable self-estimate is dropped
        # rather than failing a challenge that may otherwise be fine.
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return number if 1 <= number <= 10 and not isinstance(value, bool) else None


def _extract_object(text: str, whose: str) -> dict[str, Any]:
    """The JSON object in a reply that may fence it or wrap it in prose."""
    try:
        data = _extract_json(text)
        if not isinstance(data, dict):
            # ``_extract_json`` tries arrays first, so prose around an object can yield a list
            # nested in it (the options); retry on the outermost object alone.
            start, end = text.find("{"), text.rfind("}")
            if start != -1 and end > start:
                data = _extract_json(text[start : end + 1])
    except ScenarioParseError:
        raise ChallengeParseError(f"no JSON object found in {whose} (starts {text[:80]!r})") from None
    if not isinstance(data, dict):
        raise ChallengeParseError(f"{whose} holds a JSON {type(data).__name__}, not an object")
    return data


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'object'}: {e['msg']}" for e in exc.errors())


def parse_challenge(text: str) -> Challenge:
    """The challenge in a reply that may be bare JSON, fenced, wrapped in prose or ``{"challenge": {...}}``."""
    data = _extract_object(text, "the reply")
    if isinstance(data.get("challenge"), dict):
        data = data["challenge"]
    try:
        return Challenge.model_validate(data)
    except ValidationError as exc:
        raise ChallengeParseError(f"the reply is not a valid challenge: {_problems(exc)}") from None


class ChallengeRequest(BaseModel):
    """One challenge-generation call: the prompt version, its text for this item, and the item."""

    prompt_version: str
    prompt: str = Field(min_length=1, description="the rendered prompt, exactly as sent to the model")
    item: DatasetItem


def build_challenge_request(prompt: PromptVersion | str, item: DatasetItem) -> ChallengeRequest:
    version = get_prompt(prompt) if isinstance(prompt, str) else prompt
    return ChallengeRequest(prompt_version=version.name, prompt=render(version, item), item=item)


# ---------------------------------------------------------------------------------------------
# Difficulty judge
# ---------------------------------------------------------------------------------------------

# The judge is not shown the difficulty the writer stated or the one the item asked for: it must
# estimate from the challenge itself, or the alignment metric would only measure self-report. For the
# same reason "difficulty matches the target" is not a rating: a judge shown the target anchors on it,
# so core.metrics compares the blind estimate with the item's range (DifficultyAlignment,
# DifficultyOnTarget). The three ratings below are what structural metrics cannot see and what tells
# two competent prompts apart (answer key, distractors, whether the question needs the skill).
DIFFICULTY_JUDGE_PROMPT = """You are an experienced assessment designer. Review this multiple-choice
challenge for a learner of the skill below: estimate how difficult it is on a scale of 1 to 10, and
rate its quality.

SKILL: {skill_name}
DESCRIPTION: {skill_description}

Difficulty scale:
1-2: basic recall and recognition of fundamental concepts
3-4: understanding relationships; simple application
5-6: application to new situations; combining concepts; analysis
7-8: complex problem-solving; edge cases and exceptions
9-10: expert-level; subtle distinctions; several valid approaches to weigh

QUESTION:
{question}

OPTIONS:
{options}

CORRECT OPTION: {correct}
EXPLANATION: {explanation}

Ratings:
- "single_correct_answer": true only if exactly one option is defensibly correct from what the question
  states (the keyed one), and no other option could be argued correct by an expert.
- "distractor_plausibility" (1-5): 1 = the wrong options are obviously wrong or off-topic; 5 = each is a
  mistake a learner with a partial grasp of the skill would plausibly make.
- "requires_skill" (1-5): 1 = answerable by common sense or by test-taking cues (length, wording);
  5 = only a learner who has the skill can answer it.

Reply with a JSON object: {{"difficulty": <integer 1-10>, "single_correct_answer": <true|false>,
"distractor_plausibility": <integer 1-5>, "requires_skill": <integer 1-5>, "reasoning": "<one or two sentences>"}}"""

JUDGE_PROMPT_VERSION = "judge-" + hashlib.sha256(DIFFICULTY_JUDGE_PROMPT.encode("utf-8")).hexdigest()[:10]

DIFFICULTY_JUDGE_TOOL_NAME = "record_difficulty"
DIFFICULTY_JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 10},
        "single_correct_answer": {"type": "boolean", "description": "exactly one option is defensibly correct"},
        "distractor_plausibility": {"type": "integer", "minimum": 1, "maximum": 5},
        "requires_skill": {"type": "integer", "minimum": 1, "maximum": 5},
        "reasoning": {"type": "string"},
    },
    "required": ["difficulty", "single_correct_answer", "distractor_plausibility", "requires_skill", "reasoning"],
}
JUDGE_RATINGS: tuple[str, ...] = ("single_correct_answer", "distractor_plausibility", "requires_skill")


class DifficultyJudgeRequest(BaseModel):
    """One judge call: how hard and how good is this challenge for a learner of this skill?"""

    challenge: Challenge
    skill_name: str = Field(min_length=1)
    skill_description: str = ""


def _rating(value: Any) -> Any:
    """A 1-5 rating, or None when absent or unusable (a judge that skips a rating is not a prompt's fault)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 5 else None


class DifficultyEstimate(BaseModel):
    """The judge's reply. ``difficulty`` is required; a missing or unusable rating is None, and the
    metric built on it then does not apply to the item (a judge of an older prompt version, or one
    that skipped a field, never counts as a bad challenge)."""

    difficulty: int = Field(ge=1, le=10)
    reasoning: str = ""
    single_correct_answer: bool | None = None
    distractor_plausibility: int | None = Field(default=None, ge=1, le=5)
    requires_skill: int | None = Field(default=None, ge=1, le=5)

    @field_validator("single_correct_answer", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        text = str(value).strip().casefold()
        return True if text in ("true", "yes", "1") else False if text in ("false", "no", "0") else None

    @field_validator("distractor_plausibility", "requires_skill", mode="before")
    @classmethod
    def _ratings(cls, value: Any) -> Any:
        return _rating(value)


def render_judge_prompt(request: DifficultyJudgeRequest) -> str:
    challenge = request.challenge
    options = "\n".join(f"{i}. {text}" for i, text in enumerate(challenge.options))
    correct = (
        challenge.options[challenge.correct_index]
        if 0 <= challenge.correct_index < len(challenge.options)
        else f"(index {challenge.correct_index}, no such option)"
    )
    return DIFFICULTY_JUDGE_PROMPT.format(
        skill_name=request.skill_name,
        skill_description=request.skill_description or "(no description)",
        question=challenge.question,
        options=options or "(none)",
        correct=correct,
        explanation=challenge.explanation or "(none)",
    )


def parse_difficulty_estimate(text: str) -> DifficultyEstimate:
    """The judge's estimate; ``ChallengeParseError`` when the reply holds none in 1-10."""
    data = _extract_object(text, "the judge's reply")
    try:
        return DifficultyEstimate.model_validate(data)
    except ValidationError as exc:
        raise ChallengeParseError(f"the judge's reply is not a difficulty estimate: {_problems(exc)}") from None
