"""Pydantic models at every boundary of the pipeline.

Data crosses three systems (the app database, the dataset store, the LLM); each crossing is
validated here so that a malformed row or reply is rejected with its reason instead of flowing on.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DIFFICULTY_LEVELS: tuple[int, ...] = tuple(range(1, 11))
SCENARIOS_PER_DIFFICULTY = 5
DATASET_SIZE = SCENARIOS_PER_DIFFICULTY * len(DIFFICULTY_LEVELS)

Source = Literal["synthetic", "real_world"]

# Text that betrays a fallback or an unfilled template. The seed wrote "Generic scenario N at
# difficulty D" into real datasets whenever the LLM failed; nothing like it may be stored.
PLACEHOLDER_MARKERS: tuple[str, ...] = (
    "generic scenario",
    "placeholder",
    "lorem ipsum",
    "todo",
    "tbd",
    "general knowledge",
    "scenario description",
    "brief description of the testing context",
    "concept1",
    "concept2",
)


_PLACEHOLDER_RE = re.compile(r"\b(" + "|".join(re.escape(m) for m in PLACEHOLDER_MARKERS) + r")\b", re.IGNORECASE)


def find_placeholder(text: str) -> str | None:
    """The placeholder marker found in ``text`` (whole words, any case), or None."""
    match = _PLACEHOLDER_RE.search(text)
    return match.group(1).lower() if match else None


def difficulty_range(difficulty: int) -> tuple[int, int]:
    """Acceptable difficulty for a challenge written for ``difficulty``: target ± 1, clamped to 1–10."""
    return max(1, difficulty - 1), min(10, difficulty + 1)


def dataset_name(skill_id: str) -> str:
    return f"skill_{skill_id}_scenarios"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class Skill(BaseModel):
    """A row of the app's ``skills`` table."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    active: bool = True
    created_at: datetime = Field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=timezone.utc))

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    @property
    def fingerprint(self) -> str:
        """Hash of what the scenarios are written from: a change means the pool is stale."""
        digest = hashlib.sha256(canonical_json([self.name, self.description]).encode()).hexdigest()
        return digest[:16]


class Scenario(BaseModel):
    """One synthetic scenario as the LLM must return it."""

    model_config = ConfigDict(frozen=True)

    scenario: str = Field(min_length=20, max_length=1000)
    expected_concepts: list[str] = Field(min_length=1, max_length=8)
    difficulty: int = Field(ge=1, le=10)

    @field_validator("scenario")
    @classmethod
    def _no_placeholder(cls, value: str) -> str:
        value = value.strip()
        if marker := find_placeholder(value):
            raise ValueError(f"scenario contains placeholder text {marker!r}")
        return value

    @field_validator("expected_concepts")
    @classmethod
    def _concepts(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value if isinstance(c, str) and c.strip()]
        if not cleaned:
            raise ValueError("expected_concepts holds no non-empty concept")
        for concept in cleaned:
            if marker := find_placeholder(concept):
                raise ValueError(f"concept {concept!r} is placeholder text {marker!r}")
        return cleaned


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class LLMReply(BaseModel):
    """What an LLM resource returns: the raw text (or JSON of a tool call) and what it cost."""

    text: str
    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str
    generator: Literal["anthropic", "offline"]


class ScenarioRequest(BaseModel):
    """One LLM call: ``count`` scenarios for one skill at one difficulty."""

    skill: Skill
    difficulty: int = Field(ge=1, le=10)
    count: int = Field(default=SCENARIOS_PER_DIFFICULTY, ge=1, le=20)
    avoid: list[str] = Field(default_factory=list, description="scenarios already written; ask for others")
    attempt: int = 1


class GoldStandardCriteria(BaseModel):
    """When a real-world challenge is good enough to replace a synthetic scenario.

    Seed defaults: response-time score ≥ 0.6, judge score ≥ 0.7, correct answer required. The seed
    read "correct" from one answer; here every rule reads the evidence of all VALID answers (answer
    hygiene first: rapid guesses and idle answers are not measurements), a proportion is judged by
    the lower bound of its Wilson interval, and the answers' discrimination and calibrated
    difficulty are checked where user keys make them computable. This is the one declaration of
    the criteria: the launchpad's config class inherits these fields, so the descriptions and
    bounds shown there are these. Times are in MILLISECONDS, like the app's ``response_time``.
    """

    min_response_time_score: float = Field(
        default=0.6, ge=0, le=1,
        description="Minimum median response-time score (0–1) over the CORRECT valid answers; 1 = answered within "
        "the expected time for the difficulty (10 s + (difficulty − 1) × 5.5 s), 0 = three times it or slower.",
    )
    min_judge_score: float = Field(
        default=0.7, ge=0, le=1,
        description="Minimum LLM-judge composite score (0–1) from the challenge's Opik feedback scores.",
    )
    require_correct_answer: bool = Field(
        default=True,
        description="Apply min_correct_rate_lower_bound (the seed's 'correct answer required', read over all valid answers).",
    )
    min_correct_rate_lower_bound: float = Field(
        default=0.5, ge=0, le=1,
        description="Minimum LOWER bound (0–1) of the Wilson interval of the correct rate at correct_rate_confidence: "
        "5 correct of 10 is 0.50 but its 95% bound is 0.24, so it fails 0.5; 16 of 20 (bound 0.58) passes.",
    )
    correct_rate_confidence: float = Field(
        default=0.95, ge=0.5, le=0.999, description="Confidence level (0.5–0.999) of the correct rate's Wilson interval."
    )
    min_answers: int = Field(
        default=10, ge=1, le=100_000,
        description="Minimum number of valid answers (after answer hygiene) before a challenge can be promoted.",
    )
    min_discrimination: float = Field(
        default=0.2, ge=-1, le=1,
        description="Minimum corrected item–total (point-biserial) correlation of correctness with the user's score "
        "on the rest of the skill (−1–1; ≥ 0.30 good, 0.20–0.29 fair, < 0.20 revise, negative: check the key). "
        "Applied where it is computable (user keys, ≥ 20 users with a rest score).",
    )
    require_discrimination: bool = Field(
        default=False,
        description="Reject a challenge whose discrimination cannot be computed (no user keys in the answers, too few "
        "users, or no variation). Off: the reason is shown in discrimination_status only. Turn on once the skill "
        "store supplies user keys.",
    )
    min_answers_for_calibration: int = Field(
        default=30, ge=5, le=100_000,
        description="Fewest valid answers with a user key for a calibrated difficulty (Rasch model per skill, "
        "anchored to the written labels); fewer: 'not calibrated', never a guess.",
    )
    require_calibration: bool = Field(
        default=False,
        description="Reject a challenge that could not be calibrated. Off: it keeps its written difficulty, with the "
        "reason in calibration_status. A calibrated level outside the written label ± 1 always takes the slot "
        "of its calibrated level.",
    )
    rapid_guess_fraction: float = Field(
        default=0.1, ge=0, le=1,
        description="An answer faster than this fraction (0–1) of the expected time (10 s + (difficulty − 1) × 5.5 s, "
        "compared in milliseconds) is a rapid guess and not a measurement; 0 switches the rule off.",
    )
    rapid_guess_floor_ms: float = Field(
        default=1000.0, ge=0, le=60_000,
        description="An answer faster than this many MILLISECONDS (0–60000) is a rapid guess whatever the difficulty; "
        "0 switches the floor off.",
    )
    idle_multiple: float = Field(
        default=10.0, gt=1, le=1000,
        description="An answer slower than this multiple (1–1000) of the expected time is idle (the user left the "
        "question open) and not a measurement.",
    )
    idle_cap_ms: float = Field(
        default=300_000.0, ge=1000, le=86_400_000,
        description="An answer slower than this many MILLISECONDS (1000–86400000; default 300000 ms = 5 minutes) is "
        "idle whatever the difficulty.",
    )
    near_duplicate_threshold: float = Field(
        default=90.0, ge=50, le=100,
        description="A challenge whose question and options score at least this token-set ratio (50–100, rapidfuzz, "
        "lowercased, punctuation ignored) against a live item of the dataset is rejected as 'near-duplicate of <item>'.",
    )


class DatasetItem(BaseModel):
    """An item of an evaluation dataset, in the seed's shape (``input``/``expected_output``/``metadata``).

    ``id`` is deterministic (see ``core.generation.item_id``); provenance lives in
    ``metadata.source`` because Opik reserves the top-level ``source`` key for its own values.
    """

    id: str
    input: dict[str, Any]
    expected_output: dict[str, Any]
    metadata: dict[str, Any]

    @model_validator(mode="after")
    def _metadata_keys(self) -> "DatasetItem":
        if self.metadata.get("source") not in ("synthetic", "real_world"):
            raise ValueError(f"metadata.source must be synthetic or real_world, got {self.metadata.get('source')!r}")
        if not self.metadata.get("item_id"):
            raise ValueError("metadata.item_id (the item key) is missing")
        return self

    @property
    def source(self) -> Source:
        return self.metadata["source"]

    @property
    def item_key(self) -> str:
        return self.metadata["item_id"]

    @property
    def difficulty(self) -> int:
        return int(self.input["difficulty"])

    @property
    def content_hash(self) -> str:
        """Hash of everything but the id: equal hashes mean nothing needs rewriting."""
        payload = canonical_json([self.input, self.expected_output, self.metadata])
        return hashlib.sha256(payload.encode()).hexdigest()

    def data(self) -> dict[str, Any]:
        return {"input": self.input, "expected_output": self.expected_output, "metadata": self.metadata}


class SyncReport(BaseModel):
    """What one sync of a dataset did."""

    dataset_name: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    version: str | None = None


class Candidate(BaseModel):
    """A real-world challenge with its answers aggregated: a row of ``gold_standard_candidates``."""

    challenge_id: str
    difficulty: int = Field(ge=1, le=10)
    question: str
    options: list[str]
    correct_option: int
    explanation: str = ""
    answer_count: int = Field(default=0, description="answers read for the challenge, valid or not")
    correct_rate: float = Field(default=0.0, description="point estimate over the valid answers")
    response_time_score: float = Field(default=0.0, description="median score of the correct valid answers")
    user_confidence: float | None = None
    judge_composite_score: float | None = None
    written_difficulty: int | None = Field(default=None, description="the label; `difficulty` is the slot")
    n_valid: int = Field(default=0, description="answers that are measurements (after hygiene)")
    n_invalid: int = Field(default=0, description="malformed answers (missing correctness or time, bad confidence)")
    n_rapid_guess: int = 0
    n_idle: int = 0
    wilson_low: float | None = None
    wilson_high: float | None = None
    discrimination: float | None = None
    discrimination_status: str = ""
    calibrated_level: int | None = None
    calibration_status: str = ""
    eligible: bool = False
    reason: str = ""

    def ranking_key(self) -> tuple:
        """Best first: judge score, then response-time score, the correct rate's lower bound (the point
        estimate where there is none), valid answers; id breaks ties."""
        return (
            -(self.judge_composite_score or 0.0),
            -self.response_time_score,
            -(self.wilson_low if self.wilson_low is not None else self.correct_rate),
            -(self.n_valid or self.answer_count),
            self.challenge_id,
        )
