"""The database side of the read paths, on the test PostgreSQL (``postgres_server.running_postgres``).

One skill, 1,000 challenges, 10⁵ and 10⁶ answers (quick: 10⁴) in tables like the app's, loaded with
COPY; the migration installed as shipped. Timed (warm cache, best of ``REPEATS``): the function over
every page of the skill (what the rpc path asks for), the last OFFSET page of the old paging, the
last keyset page, and the exact count the old paging repeated on every page. When PostgreSQL cannot
be started here the rows are absent and a note says why.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from benchmarks.common import Row

SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000,)
CHALLENGES = 1_000
REPEATS = 3
SKILL = "bench-sql-skill"
MIGRATION = next((Path(__file__).resolve().parent.parent / "supabase" / "migrations").glob("*_skill_pipeline_read.sql"))
SCHEMA = """
create table skills (id text primary key, name text not null, description text, active boolean not null,
                     created_at timestamptz not null default now());
create table challenges (id text primary key, skill_id text not null references skills(id),
                         difficulty integer not null, question text not null, options_json jsonb not null,
                         correct_option integer not null, explanation text, created_at timestamptz not null default now());
create index on challenges (skill_id);
create table answers (id text primary key, challenge_id text not null references challenges(id),
                      user_id text not null, is_correct boolean not null, response_time integer,
                      confidence integer, created_at timestamptz not null default now());
create index on answers (challenge_id);
"""
ANSWERS_OF_SKILL = ("from answers a join challenges c on c.id = a.challenge_id where c.skill_id = %s")
SKIPPED: list[str] = []


def _best(conn, query: str, params: tuple) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        conn.execute(query, params).fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def _function_all_pages(conn) -> float:
    started = time.perf_counter()
    after = None
    while True:
        rows = conn.execute("select id from public.skill_pipeline_read(%s, %s, 100)", (SKILL, after)).fetchall()
        if len(rows) < 100:
            return time.perf_counter() - started
        after = rows[-1][0]


def sql_rows(quick: bool) -> list[Row]:
    try:
        import psycopg

        from skill_pipeline_tests.postgres_server import PostgresUnavailable, running_postgres
    except ImportError as exc:
        SKIPPED.append(f"SQL rows skipped: {exc}")
        return []
    rows: list[Row] = []
    try:
        with running_postgres("app") as server, psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute("insert into skills (id, name, active) values (%s, 'bench', true)", (SKILL,))
            with conn.cursor().copy("copy challenges (id, skill_id, difficulty, question, options_json, "
                                    "correct_option) from stdin") as copy:
                for i in range(CHALLENGES):
                    copy.write_row((f"c{i:06d}", SKILL, 1 + i % 10, f"Q{i}?", '["a","b","c","d"]', i % 4))
            loaded = 0
            rng = random.Random(3)
            conn.execute(MIGRATION.read_text())
            for size in QUICK_SIZES if quick else SIZES:
                with conn.cursor().copy("copy answers (id, challenge_id, user_id, is_correct, response_time, "
                                        "confidence) from stdin") as copy:
                    for i in range(loaded, size):
                        copy.write_row((f"a{i:09d}", f"c{rng.randrange(CHALLENGES):06d}", f"user-{rng.randrange(5000)}",
                                        rng.random() < 0.7, rng.randrange(3_000, 90_000), rng.randint(1, 5)))
                loaded = size
                conn.execute("analyze")
                _function_all_pages(conn)  # warm the cache
                last = conn.execute(f"select a.id {ANSWERS_OF_SKILL} order by a.id offset %s limit 1",
                                    (SKILL, size - 1001)).fetchone()[0]
                figures = {
                    "function, every page (rpc path)": min(_function_all_pages(conn) for _ in range(REPEATS)),
                    "OFFSET page at the end": _best(conn, f"select a.id, a.challenge_id, a.is_correct, a.response_time, "
                                                    f"a.confidence {ANSWERS_OF_SKILL} order by a.id offset %s limit 1000",
                                                    (SKILL, size - 1000)),
                    "keyset page at the end": _best(conn, f"select a.id, a.challenge_id, a.is_correct, a.response_time, "
                                                    f"a.confidence {ANSWERS_OF_SKILL} and a.id > %s order by a.id limit 1000",
                                                    (SKILL, last)),
                    "exact count": _best(conn, f"select count(*) {ANSWERS_OF_SKILL}", (SKILL,)),
                }
                pages = -(-size // 1000)
                for path, seconds in figures.items():
                    rows.append({"kind": "sql", "path": path, "size": size, "latency_s": 0.0,
                                 "requests": (-(-CHALLENGES // 100) if path.startswith("function") else 1),
                                 "seconds": round(seconds, 4)})
                rows.append({"kind": "sql", "path": "old paging, estimated (pages × (offset/2 + count))",
                             "size": size, "latency_s": 0.0, "requests": pages,
                             "seconds": round(pages * (figures["OFFSET page at the end"] / 2 + figures["exact count"]), 2)})
    except PostgresUnavailable as exc:
        SKIPPED.append(f"SQL rows skipped: PostgreSQL is not available ({exc})")
    return rows
