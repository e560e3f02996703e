"""The shapes of PostgREST rows the Supabase store reads, and their validation.

The SDK checks nothing: a row missing a column, a body cut short (``resp.data`` holding a string)
or a jsonb column in another shape would otherwise surface as a KeyError far from its cause. Every
page is checked here and every skill and challenge row validated, and the errors name the table,
the skill and the row. Answers, a million for a big skill, are checked column-wise instead
(``skill_store_supabase_reads``): a pydantic object per answer is what cost gigabytes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from skill_pipeline.resources.skill_store import CHALLENGE_COLUMNS, normalise_challenges


class SupabaseReadError(RuntimeError):
    """A read from Supabase failed for good. The message names Supabase, the table and the skill."""

    def __init__(self, message: str, *, table: str | None, skill: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.skill = skill
        self.code = code  # PostgREST's or PostgreSQL's error code, when the server sent one (PGRST202, 42501)


def describe_read(table: str, skill: str | None) -> str:
    """``table 'answers' for skill 'x'``; a SQL function is named as such (``rpc/<name>``)."""
    what = f"function {table.removeprefix('rpc/')!r}" if table.startswith("rpc/") else f"table {table!r}"
    return f"{what} for skill {skill!r}" if skill is not None else f"{what} (skill list)"


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
