"""The embedded app database: the app's three tables in a local SQLite file.

It starts empty (``connect`` creates the schema); ``skill_pipeline.demo.stores`` seeds the demo
skills, challenges and answers into it. ``upsert_skill`` exists for the demo and tests: in
production the app owns these tables and the pipeline never writes them.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import Field

from skill_pipeline.models import Skill
from skill_pipeline.resources.skill_store import (
    CHALLENGE_COLUMNS,
    ChallengeData,
    SkillNotFound,
    SkillStore,
    normalise_answers,
    normalise_challenges,
    user_keys,
)

SCHEMA = """
create table if not exists skills (
    id text primary key,
    name text not null,
    description text not null default '',
    active integer not null default 1,
    created_at text not null
);
create table if not exists challenges (
    id text primary key,
    skill_id text not null references skills(id),
    difficulty integer not null,
    question text not null,
    options_json text not null,
    correct_option integer not null,
    explanation text,
    created_at text not null
);
create index if not exists challenges_skill on challenges(skill_id);
create table if not exists answers (
    id text primary key,
    challenge_id text not null references challenges(id),
    user_id text not null,
    is_correct integer not null,
    response_time integer,
    confidence integer,
    created_at text not null
);
create index if not exists answers_challenge on answers(challenge_id);
"""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("pragma journal_mode=wal")
    conn.executescript(SCHEMA)
    return conn


class SqliteSkillStore(SkillStore):
    """Embedded default: the app's tables in a local SQLite file (created empty when missing)."""

    path: str = Field(description="SQLite file of the local app database; created with an empty schema when missing")

    @property
    def backend(self) -> str:
        return "sqlite"

    def _conn(self) -> sqlite3.Connection:
        return connect(Path(self.path))

    @staticmethod
    def _skill(row: tuple) -> Skill:
        return Skill(
            id=row[0], name=row[1], description=row[2] or "", active=bool(row[3]),
            created_at=datetime.fromisoformat(row[4]),
        )

    def list_skills(self, active_only: bool = True) -> list[Skill]:
        query = "select id, name, description, active, created_at from skills"
        if active_only:
            query += " where active = 1"
        with closing(self._conn()) as conn:
            return [self._skill(row) for row in conn.execute(query + " order by id")]

    def get_skill(self, skill_id: str) -> Skill:
        with closing(self._conn()) as conn:
            row = conn.execute(
                "select id, name, description, active, created_at from skills where id = ?", (skill_id,)
            ).fetchone()
        if row is None:
            raise SkillNotFound(f"skill {skill_id!r} is not in the local app database ({self.path})")
        return self._skill(row)

    def load_challenges(self, skill_id: str) -> ChallengeData:
        with closing(self._conn()) as conn:
            challenges = pd.read_sql_query(
                f"select {', '.join(CHALLENGE_COLUMNS)} from challenges where skill_id = ? order by id",
                conn, params=(skill_id,),
            )
            answers = pd.read_sql_query(
                "select a.challenge_id, a.is_correct, a.response_time, a.confidence, a.user_id from answers a "
                "join challenges c on c.id = a.challenge_id where c.skill_id = ? order by a.id",
                conn, params=(skill_id,),
            )
        # The user id is replaced by its pseudonym here and goes no further (SQLite has no sha256).
        answers["user_key"] = user_keys(skill_id, answers.pop("user_id"))
        return ChallengeData(
            challenges=normalise_challenges(challenges), answers=normalise_answers(answers), read_path="sqlite"
        )

    # Writes, for the demo and tests (the app owns these tables in production).
    def upsert_skill(self, skill: Skill) -> None:
        with closing(self._conn()) as conn, conn:
            conn.execute(
                "insert into skills (id, name, description, active, created_at) values (?, ?, ?, ?, ?) "
                "on conflict(id) do update set name=excluded.name, description=excluded.description, "
                "active=excluded.active",
                (skill.id, skill.name, skill.description, int(skill.active), skill.created_at.isoformat()),
            )
