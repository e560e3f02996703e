"""Experiment metrics: how good is a generated challenge for a dataset item?

Each metric is a plain object with a ``name`` and a ``score(**inputs)``, knowing nothing of Opik:
the local experiment calls it through ``score_challenge``, and ``resources.opik_metrics`` wraps the
same objects in Opik ``BaseMetric``s (never tracked) for ``opik.evaluate``, so both paths give the
same numbers and importing this module costs no SDK.

What a metric's ``score`` receives — the names ``opik.evaluate`` passes, no ``scoring_key_mapping``
needed. Opik merges the dataset item's content with the task output (``{**item, **output}``):

- from the item (``DatasetItem.data()``): ``input``, ``expected_output``, ``metadata``;
- from the task output (``ChallengeTaskOutput.as_task_output()``): ``challenge`` (the parsed
  challenge as a dict, or None when the reply could not be parsed), ``judged_difficulty`` (the
  judge's 1–10 estimate, or None), the judge's ratings ``single_correct_answer`` (bool),
  ``distractor_plausibility`` and ``requires_skill`` (1–5; None when the judge gave none),
  ``parse_error``, ``prompt_version``, ``usage`` and ``llm_calls`` (the cost of the item).
  The task output must not use the item's keys, or it would shadow them.

Values are in 0..1. A metric that does not apply to an item returns an **empty list** instead of a
``MetricResult``: ``ConceptCoverage`` when the item lists no required concepts (real-world items),
``ValidatedQuestionAgreement`` for synthetic items, ``ExplanationPresent`` when the item does not
require one, the judge-rated metrics when the judge gave no such rating. Opik adds the elements of a returned list to the item's scores, so nothing is recorded
for it — no feedback score is sent and Opik's own means leave it out — and ``score_challenge``
likewise omits it, so ``core.experiment`` never averages a score that does not exist. (A
``scoring_failed`` result would be counted and reported as a failure; a NaN would be sent to the
backend.) A missing or unparseable challenge scores 0 on every applicable metric: a prompt that
makes the model reply garbage is worse, not unscored.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, Field, ValidationError

from skill_pipeline.core.challenge_prompt import Challenge
from skill_pipeline.core.generation import QUESTION_CHARACTERISTICS
from skill_pipeline.models import DatasetItem, TokenUsage

MIN_EXPLANATION_WORDS = 5
# Judged difficulty this many points outside the item's range scores 0 (linear in between).
DIFFICULTY_FALLOFF = 3
# Weights of question and correct-answer similarity in ``ValidatedQuestionAgreement``.
QUESTION_WEIGHT = 0.5


class ChallengeTaskOutput(BaseModel):
    """What the experiment task returns for one item (see the module docstring for the keys)."""

    challenge: Challenge | None
    judged_difficulty: int | None = Field(default=None, ge=1, le=10)
    judge_reasoning: str = ""
    single_correct_answer: bool | None = None
    distractor_plausibility: int | None = Field(default=None, ge=1, le=5)
    requires_skill: int | None = Field(default=None, ge=1, le=5)
    parse_error: str | None = None
    prompt_version: str
    usage: TokenUsage = Field(default_factory=TokenUsage)
    llm_calls: int = Field(default=0, ge=0, description="LLM calls the item cost (writer + judge)")

    def as_task_output(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class MetricResult(BaseModel):
    """One metric's score of one item: the fields of Opik's ``ScoreResult`` the pipeline uses."""

    name: str
    value: float
    reason: str = ""
    scoring_failed: bool = False


Scored = MetricResult | list[MetricResult]


def _challenge(value: Any) -> tuple[Challenge | None, str]:
    """The challenge from a task output value, or None and why not."""
    if value is None:
        return None, "no challenge was generated (the reply could not be parsed)"
    if isinstance(value, Challenge):
        return value, ""
    try:
        return Challenge.model_validate(value), ""
    except ValidationError as exc:
        return None, f"the task output's challenge is invalid: {exc.errors()[0]['msg']}"


def _characteristics(expected_output: dict[str, Any] | None) -> dict[str, Any]:
    return {**QUESTION_CHARACTERISTICS, **((expected_output or {}).get("question_characteristics") or {})}


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


_WORD = re.compile(r"[a-z0-9]+(?:[+#'][a-z0-9+#]*)?")


def _tokens(text: str) -> list[str]:
    """Lower-case word tokens with a light plural strip ("rebases" ≈ "rebase")."""
    out = []
    for token in _WORD.findall(text.casefold()):
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
            token = token[:-1]
        out.append(token)
    return out


def jaccard(a: str, b: str) -> float:
    """Word-set overlap |A∩B| / |A∪B| of two texts (1.0 for two empty texts)."""
    left, right = set(_tokens(a)), set(_tokens(b))
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


class ChallengeMetric:
    """Base of the metrics: named after the class unless given a name."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__

    def score(self, **inputs: Any) -> Scored:  # pragma: no cover - every metric overrides it
        raise NotImplementedError

    def _result(self, value: float, reason: str) -> MetricResult:
        return MetricResult(name=self.name, value=float(value), reason=reason)

    def _no_challenge(self, why: str) -> MetricResult:
        return self._result(0.0, why)


class OptionCount(ChallengeMetric):
    """1 when the challenge has exactly the item's option count (4) of distinct, non-empty options."""

    def score(self, challenge: Any, expected_output: dict[str, Any], **ignored: Any) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        wanted = int(_characteristics(expected_output)["option_count"])
        distinct = {_normalise(o) for o in parsed.options if o.strip()}
        if len(parsed.options) == wanted and len(distinct) == wanted:
            return self._result(1.0, f"{wanted} distinct options")
        return self._result(
            0.0, f"{len(parsed.options)} options, {len(distinct)} distinct and non-empty; {wanted} required"
        )


class ExplanationPresent(ChallengeMetric):
    """1 when the challenge explains its answer in at least ``MIN_EXPLANATION_WORDS`` words."""

    def score(self, challenge: Any, expected_output: dict[str, Any], **ignored: Any) -> Scored:
        if not _characteristics(expected_output).get("must_have_explanation", True):
            return []
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        words = len(parsed.explanation.split())
        if words >= MIN_EXPLANATION_WORDS:
            return self._result(1.0, f"explanation of {words} words")
        return self._result(0.0, f"explanation of {words} words; at least {MIN_EXPLANATION_WORDS} required")


class LengthWithinBounds(ChallengeMetric):
    """1 when the question's length in characters is within the item's [min_length, max_length]."""

    def score(self, challenge: Any, expected_output: dict[str, Any], **ignored: Any) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        characteristics = _characteristics(expected_output)
        low, high = int(characteristics["min_length"]), int(characteristics["max_length"])
        length = len(parsed.question)
        if low <= length <= high:
            return self._result(1.0, f"question of {length} characters, within {low}-{high}")
        return self._result(0.0, f"question of {length} characters, outside {low}-{high}")


def concept_covered(concept: str, text: str) -> bool:
    """A concept is covered when its phrase, or every one of its words, appears in ``text``."""
    if _normalise(concept) in _normalise(text):
        return True
    words = set(_tokens(concept))
    return bool(words) and words <= set(_tokens(text))


class ConceptCoverage(ChallengeMetric):
    """Share of the item's required concepts named in the question, options or explanation."""

    def score(self, challenge: Any, expected_output: dict[str, Any], **ignored: Any) -> Scored:
        required = [str(c) for c in (expected_output or {}).get("required_concepts") or [] if str(c).strip()]
        if not required:
            return []
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        text = " ".join([parsed.question, *parsed.options, parsed.explanation])
        missing = [c for c in required if not concept_covered(c, text)]
        covered = len(required) - len(missing)
        reason = f"{covered} of {len(required)} required concepts covered"
        if missing:
            reason += f"; missing: {', '.join(missing)}"
        return self._result(covered / len(required), reason)


class DifficultyAlignment(ChallengeMetric):
    """1 when the judge's estimate lies in the item's difficulty range, falling linearly to 0 at
    ``DIFFICULTY_FALLOFF`` points outside it. The estimate comes in the task output: the metric
    itself calls no LLM, so it runs anywhere and the judge's cost is counted once, in the task."""

    def score(
        self, challenge: Any, expected_output: dict[str, Any], judged_difficulty: int | None, **ignored: Any
    ) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        if judged_difficulty is None:
            return self._result(0.0, "no difficulty estimate from the judge")
        low, high = (expected_output or {}).get("difficulty_range") or (1, 10)
        judged = int(judged_difficulty)
        distance = max(low - judged, judged - high, 0)
        value = max(0.0, 1.0 - distance / DIFFICULTY_FALLOFF)
        where = "inside" if distance == 0 else f"{distance} outside"
        return self._result(value, f"judged difficulty {judged}, {where} the range {low}-{high}")


def answer_problems(challenge: Challenge) -> list[str]:
    problems = []
    if len(challenge.options) < 2:
        problems.append(f"{len(challenge.options)} options, at least 2 needed")
    if not 0 <= challenge.correct_index < len(challenge.options):
        problems.append(f"correct_index {challenge.correct_index} is not an option index")
    empty = sum(1 for o in challenge.options if not o.strip())
    if empty:
        problems.append(f"{empty} empty options")
    non_empty = [_normalise(o) for o in challenge.options if o.strip()]
    if len(set(non_empty)) < len(non_empty):
        problems.append("duplicate options")
    return problems


class AnswerValidity(ChallengeMetric):
    """1 when the answer is well defined: correct_index names an option, options distinct, none empty."""

    def score(self, challenge: Any, **ignored: Any) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        problems = answer_problems(parsed)
        if problems:
            return self._result(0.0, "; ".join(problems))
        return self._result(1.0, f"option {parsed.correct_index} of {len(parsed.options)} is the answer")


class ValidatedQuestionAgreement(ChallengeMetric):
    """Real-world items only: how close the generated challenge is to the question users validated.

    ``QUESTION_WEIGHT`` × word overlap (``jaccard``) of the questions + the rest × overlap of the
    correct options' texts. Synthetic items have no validated question: not applicable (``[]``).
    """

    def score(
        self, challenge: Any, expected_output: dict[str, Any], metadata: dict[str, Any] | None, **ignored: Any
    ) -> Scored:
        expected = expected_output or {}
        if (metadata or {}).get("source") != "real_world" or not expected.get("validated_question"):
            return []
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        question_similarity = jaccard(parsed.question, str(expected["validated_question"]))
        validated_options = list(expected.get("validated_options") or [])
        validated_index = expected.get("validated_correct_index")
        if (
            isinstance(validated_index, int)
            and 0 <= validated_index < len(validated_options)
            and 0 <= parsed.correct_index < len(parsed.options)
        ):
            answer_similarity = jaccard(parsed.options[parsed.correct_index], str(validated_options[validated_index]))
        else:
            answer_similarity = 0.0
        value = QUESTION_WEIGHT * question_similarity + (1 - QUESTION_WEIGHT) * answer_similarity
        return self._result(
            value, f"question overlap {question_similarity:.2f}, correct-answer overlap {answer_similarity:.2f}"
        )


# --- judged quality: what structural metrics cannot see ----------------------------------------------
# The judge's ratings come in the task output (one judge call per item, its cost counted in the task's
# usage); these metrics only read them, so they are as pure as the structural ones.


class _JudgedRating(ChallengeMetric):
    """A 1–5 judge rating mapped to 0..1 ((r - 1) / 4); not applicable when the judge gave none."""

    field = ""
    meaning = ""

    def score(self, challenge: Any, **inputs: Any) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        rating = inputs.get(self.field)
        if rating is None or isinstance(rating, bool) or not 1 <= int(rating) <= 5:
            return []
        return self._result((int(rating) - 1) / 4, f"judge rated {self.meaning} {int(rating)}/5")


class SingleCorrectAnswer(ChallengeMetric):
    """Pass/fail: the judge finds exactly one option defensibly correct (the keyed one). Not applicable
    when the judge gave no such rating; 0 when the key itself is broken (``answer_problems``)."""

    def score(self, challenge: Any, single_correct_answer: bool | None = None, **ignored: Any) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        problems = answer_problems(parsed)
        if problems:
            return self._result(0.0, "; ".join(problems))
        if single_correct_answer is None:
            return []
        if single_correct_answer:
            return self._result(1.0, "judge: exactly one option is defensibly correct")
        return self._result(0.0, "judge: the key is not the single defensible answer")


class DistractorPlausibility(_JudgedRating):
    """How plausible the wrong options are (judge, 1–5 → 0..1)."""

    field, meaning = "distractor_plausibility", "the distractors' plausibility"


class RequiresSkill(_JudgedRating):
    """Whether only a learner with the skill can answer (judge, 1–5 → 0..1)."""

    field, meaning = "requires_skill", "the need for the skill"


class DifficultyOnTarget(ChallengeMetric):
    """Pass/fail: the judge's blind estimate lies in the item's difficulty range (the judge is never
    shown the target, which it would anchor on). The pass/fail twin of ``DifficultyAlignment``."""

    def score(
        self, challenge: Any, expected_output: dict[str, Any], judged_difficulty: int | None, **ignored: Any
    ) -> Scored:
        parsed, why = _challenge(challenge)
        if parsed is None:
            return self._no_challenge(why)
        if judged_difficulty is None:
            return self._result(0.0, "no difficulty estimate from the judge")
        low, high = (expected_output or {}).get("difficulty_range") or (1, 10)
        inside = low <= int(judged_difficulty) <= high
        return self._result(float(inside), f"judged {judged_difficulty}, target {low}-{high}")


ALL_METRICS: tuple[type[ChallengeMetric], ...] = (
    OptionCount,
    ExplanationPresent,
    LengthWithinBounds,
    ConceptCoverage,
    DifficultyAlignment,
    AnswerValidity,
    ValidatedQuestionAgreement,
    SingleCorrectAnswer,
    DistractorPlausibility,
    RequiresSkill,
    DifficultyOnTarget,
)
JUDGED_METRICS: tuple[str, ...] = ("SingleCorrectAnswer", "DistractorPlausibility", "RequiresSkill", "DifficultyOnTarget")
METRIC_NAMES: tuple[str, ...] = tuple(cls.__name__ for cls in ALL_METRICS)


def all_metrics() -> list[ChallengeMetric]:
    """Fresh instances of every metric (``resources.opik_metrics`` wraps them for ``opik.evaluate``)."""
    return [cls() for cls in ALL_METRICS]


def score_challenge(
    task_output: dict[str, Any] | ChallengeTaskOutput,
    item: DatasetItem,
    metrics: Sequence[ChallengeMetric] | None = None,
) -> dict[str, MetricResult]:
    """Score one task output the way ``opik.evaluate`` would (item content merged with the output),
    without Opik: the local experiment's path. Not-applicable metrics are absent from the result."""
    output = task_output.as_task_output() if isinstance(task_output, ChallengeTaskOutput) else task_output
    clash = sorted(set(output) & set(item.data()))
    if clash:
        raise ValueError(f"task output keys {clash} would shadow the dataset item's (item {item.id})")
    inputs = {**item.data(), **output}
    results: dict[str, MetricResult] = {}
    for metric in metrics if metrics is not None else all_metrics():
        result = metric.score(**inputs)
        for one in result if isinstance(result, list) else [result]:
            results[one.name] = one
    return results


def score_values(results: dict[str, Any] | Iterable[Any]) -> dict[str, float]:
    """``{metric: value}`` of the results that scored (failed scores are left out, as Opik does).

    Takes our ``MetricResult``s or Opik's ``ScoreResult``s (same attribute names)."""
    items = results.values() if isinstance(results, dict) else results
    return {r.name: float(r.value) for r in items if not r.scoring_failed}
