"""The spend ledger: one SQLite row per paid LLM call, so the day's spend is known across runs.

Why a ledger file and not the Dagster event log: the guard needs the spend *before each call*,
including calls of runs still in progress and of runs that failed (a failed step writes no
materialisation metadata, but what it paid was paid). One row per call, written as soon as the
call is settled, answers both with one indexed sum. The file lives in the local data folder
(``$SKILL_PIPELINE_HOME/spend.sqlite``) unless ``SKILL_PIPELINE_SPEND_LEDGER`` names another;
runs on several machines must point it at a shared volume (README, "Spend budget").
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from skill_pipeline.core.budget import LedgerEntry, Spend

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_spend (
    at TEXT NOT NULL, day TEXT NOT NULL, run_id TEXT NOT NULL, skill_id TEXT NOT NULL,
    purpose TEXT NOT NULL, model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL
);
CREATE INDEX IF NOT EXISTS llm_spend_day ON llm_spend (day);
CREATE INDEX IF NOT EXISTS llm_spend_run ON llm_spend (run_id);
"""
_SUM = ("SELECT COUNT(*), COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost_usd), 0), "
        "COUNT(*) - COUNT(cost_usd) FROM llm_spend")
_schema_lock = threading.Lock()


class SqliteSpendLedger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ready = False  # the schema exists: created once per ledger, not on every call's connect

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            with _schema_lock:
                conn.executescript(SCHEMA)
                self._ready = True
        return conn

    def record(self, entry: LedgerEntry) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT INTO llm_spend VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.at.isoformat(), entry.day, entry.run_id, entry.skill_id, entry.purpose, entry.model,
                 entry.input_tokens, entry.output_tokens, entry.cost_usd),
            )

    def _spend(self, where: str, value: str) -> Spend:
        with closing(self._connect()) as conn:
            calls, tokens, usd, unpriced = conn.execute(f"{_SUM} WHERE {where} = ?", (value,)).fetchone()
        return Spend(calls=calls, tokens=tokens, usd=round(usd, 6), unpriced_calls=unpriced)

    def run_spend(self, run_id: str) -> Spend:
        return self._spend("run_id", run_id)

    def day_spend(self, day: str) -> Spend:
        return self._spend("day", day)

    def day_spend_by_skill(self, day: str) -> dict[str, Spend]:
        if not self.path.exists():
            return {}
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT skill_id, COUNT(*), COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost_usd), 0), "
                "COUNT(*) - COUNT(cost_usd) FROM llm_spend WHERE day = ? GROUP BY skill_id", (day,)
            ).fetchall()
        return {r[0]: Spend(calls=r[1], tokens=r[2], usd=round(r[3], 6), unpriced_calls=r[4]) for r in rows}
