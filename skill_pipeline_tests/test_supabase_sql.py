"""``supabase/migrations/*_skill_pipeline_read.sql`` and the read-only role on a real PostgreSQL.

The server is the one the suite already starts (``postgres_server.running_postgres``). Tables are
made like the app's (text ids, jsonb options, integer milliseconds and confidence, the user id on
every answer), with the rows of ``test_supabase_store.Dataset`` plus the bad rows promotion must
reject with their reason (null and negative response times, confidence 9, a null confidence) and
answers of another skill. The function's pages, unpacked the way ``SupabaseSkillStore`` unpacks
them, must give the same answers frame as the keyset path and the SQLite path on the same rows,
and the same candidate figures; and it must work for a role that holds only the grants of
``supabase/read_only_role.sql``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skill_pipeline.core.promotion import score_candidates
from skill_pipeline.models import GoldStandardCriteria
from skill_pipeline.resources.skill_store_supabase_reads import AnswerColumns
from skill_pipeline.resources.supabase_rows import CHALLENGE_ROWS, challenge_frame
from skill_pipeline_tests.fakes.postgrest_rpc import install_read_function
from skill_pipeline_tests.fakes.postgrest_server import serve_postgrest
from skill_pipeline_tests.postgres_server import PostgresServer, PostgresUnavailable, running_postgres
from skill_pipeline_tests.test_supabase_store import CREATED, OTHER, SKILL, Dataset, make_store

psycopg = pytest.importorskip("psycopg")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SUPABASE = Path(__file__).resolve().parents[1] / "supabase"
MIGRATION = next((SUPABASE / "migrations").glob("*_skill_pipeline_read.sql"))
ROLE_SQL = SUPABASE / "read_only_role.sql"
ROLE = "skill_pipeline_reader"

APP_SCHEMA = """
create table skills (id text primary key, name text not null, description text, active boolean not null,
                     created_at timestamptz not null);
create table challenges (id text primary key, skill_id text not null references skills(id),
                         difficulty integer not null, question text not null, options_json jsonb not null,
                         correct_option integer not null, explanation text, created_at timestamptz not null);
create index on challenges (skill_id);
create table answers (id text primary key, challenge_id text not null references challenges(id),
                      user_id text not null, is_correct boolean not null, response_time integer,
                      confidence integer, created_at timestamptz not null);
create index on answers (challenge_id);
create table profiles (id text primary key, email text not null);  -- app data the pipeline must not see
insert into profiles values ('user-1', 'someone@example.com');
"""


def bad_answers(dataset: Dataset) -> list[dict[str, Any]]:
    """Rows promotion rejects, each with its reason, on challenges that also have good answers."""
    target = dataset.challenges[1]["id"]
    base = {"challenge_id": target, "is_correct": True, "created_at": CREATED}
    return [
        {**base, "id": "an-bad-1", "user_id": "user-1", "response_time": None, "confidence": 3},
        {**base, "id": "an-bad-2", "user_id": "user-2", "response_time": -5, "confidence": 3},
        {**base, "id": "an-bad-3", "user_id": "user-3", "response_time": 4_000, "confidence": 9},
        {**base, "id": "an-bad-4", "user_id": "user-4", "response_time": 4_000, "confidence": None},
    ]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    data = Dataset(60, 900)
    data.answers += bad_answers(data)
    return data


@pytest.fixture(scope="module")
def postgres(dataset: Dataset) -> Iterator[PostgresServer]:
    try:
        with running_postgres("app") as server:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(APP_SCHEMA)
                with conn.cursor() as cur:
                    cur.executemany("insert into skills values (%s, %s, %s, %s, %s)",
                                    [tuple(s.values()) for s in dataset.skills])
                    cur.executemany(
                        "insert into challenges values (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [(c["id"], c["skill_id"], c["difficulty"], c["question"], json.dumps(c["options_json"]),
                          c["correct_option"], c["explanation"], c["created_at"])
                         for c in dataset.challenges + dataset.other_challenges],
                    )
                    cur.executemany(
                        "insert into answers values (%s, %s, %s, %s, %s, %s, %s)",
                        [(a["id"], a["challenge_id"], a["user_id"], a["is_correct"], a["response_time"],
                          a["confidence"], a["created_at"]) for a in dataset.answers + dataset.other_answers],
                    )
                conn.execute(MIGRATION.read_text())
            yield server
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not available here: {exc}")


def call_function(conn: Any, skill: str, page: int) -> list[dict[str, Any]]:
    """Every page of the function, keyset on the challenge id, as PostgREST would render the rows."""
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        cur = conn.execute("select * from public.skill_pipeline_read(%s, %s, %s)", (skill, after, page))
        names = [d.name for d in cur.description]
        batch = [dict(zip(names, values)) for values in cur.fetchall()]
        rows += batch
        if len(batch) < page:
            return rows
        after = batch[-1]["id"]


def unpack(rows: list[dict[str, Any]], skill: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the store does with the function's pages."""
    answers = AnswerColumns(skill)
    answers.add_packed(rows, "test")
    return challenge_frame(CHALLENGE_ROWS.validate_python(rows)), answers.frame()


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_function_gives_the_frames_and_figures_of_the_keyset_and_sqlite_paths(
    postgres: PostgresServer, dataset: Dataset, tmp_path: Path
) -> None:
    with psycopg.connect(postgres.dsn()) as conn:
        rows = call_function(conn, SKILL, page=7)
        assert call_function(conn, "skill-cobol", page=7) == []
    challenges, answers = unpack(rows, SKILL)

    with serve_postgrest() as fake:
        dataset.load(fake)
        keyset = make_store(fake, read_path="keyset", page_size=100).load_challenges(SKILL)
        install_read_function(fake)
        via_fake_rpc = make_store(fake, rpc_page_size=7).load_challenges(SKILL)
    local = dataset.load_sqlite(tmp_path / "app.db").load_challenges(SKILL)
    assert (keyset.read_path, via_fake_rpc.read_path, local.read_path) == ("keyset", "rpc", "sqlite")

    assert len(answers) == len(dataset.answers)  # every answer of the skill, none of the other
    for other in (keyset, via_fake_rpc, local):
        pd.testing.assert_frame_equal(challenges, other.challenges)
        pd.testing.assert_frame_equal(ordered(answers), ordered(other.answers))

    judge = {cid: 0.9 for cid in challenges["id"]}
    criteria = GoldStandardCriteria(min_answers=3)
    frame, summary = score_candidates(challenges, answers, judge, criteria)
    for other in (keyset, local):
        other_frame, other_summary = score_candidates(other.challenges, other.answers, judge, criteria)
        pd.testing.assert_frame_equal(frame, other_frame)
        assert summary == other_summary
    # The bad rows are rejected with their reasons on every path (they are not lost on the way).
    reasons = summary.answers_invalid_by_reason
    assert sum(reasons.values()) >= 3 and summary.answers_invalid >= 3


def test_the_fake_function_returns_what_the_sql_returns(postgres: PostgresServer, dataset: Dataset) -> None:
    from skill_pipeline_tests.fakes.postgrest_rpc import _read

    with psycopg.connect(postgres.dsn()) as conn:
        real = call_function(conn, OTHER, page=1000)
    with serve_postgrest() as fake:
        dataset.load(fake)
        twin = _read(fake, {"p_skill_id": OTHER, "p_after": None, "p_limit": 1000})
    assert [r["id"] for r in real] == [r["id"] for r in twin]
    def answers(row: dict[str, Any]) -> list[tuple]:
        """The packed arrays as (is_correct, response_time, confidence, user_key) tuples, in any order."""
        def number(value: Any) -> float | None:
            return None if value is None else float(value)

        return sorted(zip(row["is_correct"], map(number, row["response_time"]), map(number, row["confidence"]),
                          row["user_key"]), key=repr)

    for ours, theirs in zip(real, twin):
        assert (ours["answer_count"], ours["options_json"]) == (theirs["answer_count"], theirs["options_json"])
        assert answers(ours) == answers(theirs)


def test_the_read_only_role_reads_through_the_function_and_nothing_else(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        for table in ("skills", "challenges", "answers"):
            conn.execute(f"alter table {table} enable row level security")  # as on Supabase
        conn.execute(ROLE_SQL.read_text())
        owner = call_function(conn, SKILL, page=50)
    try:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(f"set role {ROLE}")
            assert call_function(conn, SKILL, page=50) == owner
            assert conn.execute("select count(*) from answers").fetchone()[0] > 0
            for statement, code in (
                ("select * from profiles", "42501"),
                ("select created_at from answers", "42501"),  # a column the pipeline does not read
                ("insert into skills values ('x', 'x', null, true, now())", "42501"),
                ("update answers set is_correct = true", "42501"),
                ("delete from challenges", "42501"),
            ):
                with pytest.raises(psycopg.Error) as denied:
                    conn.execute(statement)
                assert denied.value.sqlstate == code, statement
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute("create role someone_else nologin")
            conn.execute("set role someone_else")
            with pytest.raises(psycopg.Error) as no_execute:
                conn.execute("select * from public.skill_pipeline_read(%s)", (SKILL,))
            assert no_execute.value.sqlstate == "42501"  # EXECUTE was revoked from PUBLIC
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute("drop role if exists someone_else")


def test_the_readme_shows_the_role_sql_that_is_tested() -> None:
    readme = (SUPABASE / "README.md").read_text()
    assert ROLE_SQL.read_text().strip() in readme
    assert MIGRATION.name in readme
