"""The shapes of PostgREST rows the Supabase store reads, and their validation.

The SDK checks nothing: a row missing a column, a body cut short (``resp.data`` holding a string)
or a jsonb column in another shape would otherwise surface as a KeyError far from its cause. Every
page is checked here and every row validated, and the errors name the table, the skill and the row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from skill_pipeline.resources.skill_store import ANSWER_COLUMNS, CHALLENGE_COLUMNS, normalise_answers, normalise_challenges


class SupabaseReadError(RuntimeError):
    """A read from Supabase failed for good. The message names Supabase, the table and the skill."""

    def __init__(self, message: str, *, table: str | None, skill: str | None) -> None:
        super().__init__(message)
        self.table = table
        self.skill = skill


def describe_read(table: str, skill: str | None) -> str:
    return f"table {table!r} for skill {skill!r}" if skill is not None else f"table {table!r} (skill list)"


class Row(BaseModel):
    # Ids may be bigint in a Supabase schema and text in SQLite: both become strings.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class SkillRow(Row):
    id: str
    name: str
    description: str | None
    active: bool
    created_at: datetime  # PostgREST renders timestamptz as ``2024-05-01T10:00:00+00:00``


class ChallengeRow(Row):
    id: str
    skill_id: str
    difficulty: int
    question: str
    options_json: str
    correct_option: int
    explanation: str | None

    @field_validator("options_json", mode="before")
    @classmethod
    def _options_as_json_text(cls, value: Any) -> Any:
        """A ``jsonb`` array arrives as a list; SQLite holds JSON text. Both stores hand out text."""
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False)
        return value


class EmbeddedChallenge(Row):
    skill_id: str


class AnswerRow(Row):
    id: str
    challenge_id: str
    is_correct: bool
    response_time: float | None
    confidence: float | None
    challenges: EmbeddedChallenge


def validate_rows(adapter: TypeAdapter, rows: list[dict[str, Any]], what: str) -> list:
    """Validate rows, naming the first bad row by position and id (the SDK checks nothing)."""
    try:
        return adapter.validate_python(rows)
    except ValidationError as exc:
        first = exc.errors()[0]
        index = first["loc"][0] if first["loc"] else "?"
        row_id = rows[index].get("id") if isinstance(index, int) and isinstance(rows[index], dict) else None
        field = ".".join(str(part) for part in first["loc"][1:]) or "row"
        raise ValueError(
            f"{what}: row {index} (id {row_id!r}) is invalid: {field}: {first['msg']}"
            f" ({exc.error_count()} error(s) in {len(rows)} rows)"
        ) from None


SKILL_ROWS = TypeAdapter(list[SkillRow])
CHALLENGE_ROWS = TypeAdapter(list[ChallengeRow])
ANSWER_ROWS = TypeAdapter(list[AnswerRow])


def page_rows(data: Any, table: str, skill: str | None) -> list[dict[str, Any]]:
    """The SDK hands back whatever the body parsed to, or the raw text when it did not parse."""
    if isinstance(data, str):
        raise SupabaseReadError(
            f"Supabase returned a body that is not valid JSON for {describe_read(table, skill)} "
            f"({len(data)} characters; cut short?)",
            table=table, skill=skill,
        )
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise SupabaseReadError(
            f"Supabase returned {type(data).__name__}, not a JSON array of rows, for {describe_read(table, skill)}",
            table=table, skill=skill,
        )
    return data


def challenge_frame(rows: list[ChallengeRow]) -> pd.DataFrame:
    """CHALLENGE_COLUMNS with fixed dtypes (SQLite's depend on the data: object when empty)."""
    return normalise_challenges(
        pd.DataFrame([row.model_dump(include=set(CHALLENGE_COLUMNS)) for row in rows], columns=CHALLENGE_COLUMNS)
    )


def answer_frame(rows: list[AnswerRow]) -> pd.DataFrame:
    """ANSWER_COLUMNS: ``is_correct`` bool, ``response_time`` (ms) and ``confidence`` float with NaN for null."""
    return normalise_answers(
        pd.DataFrame([row.model_dump(include=set(ANSWER_COLUMNS)) for row in rows], columns=ANSWER_COLUMNS)
    )
