"""The embedded dataset store: datasets, items, judge scores and experiments in a local SQLite file.

Nothing written here ever reaches a real Opik (``is_remote`` is False), which is what lets the
offline scenario writer's output land here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from pydantic import Field

from skill_pipeline.core.experiment import ExperimentRecord, ExperimentTask, evaluate_locally
from skill_pipeline.core.generation import SyntheticScenario
from skill_pipeline.models import DatasetItem, Skill
from skill_pipeline.resources.dataset_store import DatasetStore, DatasetSyncError


DATASET_SCHEMA = """
create table if not exists datasets (
    name text primary key,
    description text not null default '',
    created_at text not null,
    version integer not null default 0
);
create table if not exists dataset_items (
    dataset_name text not null references datasets(name),
    id text not null,
    data text not null,
    primary key (dataset_name, id)
);
create table if not exists scenario_pool (
    skill_id text not null,
    item_key text not null,
    data text not null,
    primary key (skill_id, item_key)
);
create table if not exists feedback_scores (
    challenge_id text not null,
    name text not null,
    value real not null,
    primary key (challenge_id, name)
);
create table if not exists experiments (
    id text primary key,
    dataset_name text not null,
    name text not null,
    created_at text not null,
    config text not null,
    results text not null
);
"""


class LocalDatasetStore(DatasetStore):
    """Embedded default: datasets, items by id, judge feedback scores and experiments in SQLite.

    It starts empty; ``skill_pipeline.demo.stores`` records the demo judge scores into it.
    """

    path: str = Field(description="SQLite file of the local dataset store; created empty when missing")

    @property
    def backend(self) -> str:
        return "local dataset store"

    def dataset_location(self, name: str) -> str:
        return f"{self.path} (dataset {name})"

    @property
    def is_remote(self) -> bool:
        return False

    def connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("pragma journal_mode=wal")
        conn.executescript(DATASET_SCHEMA)
        return conn

    def dataset_exists(self, name: str) -> bool:
        with closing(self.connect()) as conn:
            return conn.execute("select 1 from datasets where name = ?", (name,)).fetchone() is not None

    def ensure_dataset(self, name: str, description: str) -> None:
        with closing(self.connect()) as conn, conn:
            conn.execute(
                "insert into datasets (name, description, created_at) values (?, ?, ?) on conflict(name) do nothing",
                (name, description, datetime.now(timezone.utc).isoformat()),
            )

    def read_items(self, name: str) -> list[DatasetItem]:
        with closing(self.connect()) as conn:
            rows = conn.execute("select id, data from dataset_items where dataset_name = ? order by id", (name,))
            return [DatasetItem(id=row[0], **json.loads(row[1])) for row in rows]

    def _bump(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute("update datasets set version = version + 1 where name = ?", (name,))

    def write_items(self, name: str, items: list[DatasetItem]) -> None:
        if not self.dataset_exists(name):
            raise DatasetSyncError(f"{self.backend}: dataset {name} does not exist")
        with closing(self.connect()) as conn, conn:
            conn.executemany(
                "insert into dataset_items (dataset_name, id, data) values (?, ?, ?) "
                "on conflict(dataset_name, id) do update set data = excluded.data",
                [(name, item.id, json.dumps(item.data(), sort_keys=True)) for item in items],
            )
            self._bump(conn, name)

    def delete_items(self, name: str, ids: list[str]) -> None:
        with closing(self.connect()) as conn, conn:
            conn.executemany("delete from dataset_items where dataset_name = ? and id = ?", [(name, i) for i in ids])
            self._bump(conn, name)

    def dataset_version(self, name: str) -> str | None:
        with closing(self.connect()) as conn:
            row = conn.execute("select version from datasets where name = ?", (name,)).fetchone()
        return None if row is None else f"v{row[0]}"

    def read_pool(self, skill_id: str) -> list[SyntheticScenario]:
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "select data from scenario_pool where skill_id = ? order by item_key", (skill_id,)
            ).fetchall()
        return sorted(
            (SyntheticScenario.model_validate_json(row[0]) for row in rows), key=lambda r: (r.difficulty, r.slot)
        )

    def write_pool(self, skill: Skill, scenarios: list[SyntheticScenario]) -> None:
        with closing(self.connect()) as conn, conn:
            conn.executemany(
                "insert into scenario_pool (skill_id, item_key, data) values (?, ?, ?) "
                "on conflict(skill_id, item_key) do update set data = excluded.data",
                [(skill.id, row.item_key, row.model_dump_json()) for row in scenarios],
            )

    def judge_scores(self, challenge_ids: Iterable[str]) -> dict[str, float]:
        ids = list(challenge_ids)
        scores: dict[str, float] = {}
        with closing(self.connect()) as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"select challenge_id, value from feedback_scores where name = ? and challenge_id in ({marks})",
                    (self.judge_score_name, *chunk),
                )
                scores.update({row[0]: float(row[1]) for row in rows})
        return scores

    # Writes of judge scores, for the demo and tests (the app's judge writes them in production).
    def record_judge_scores(self, scores: dict[str, float], name: str | None = None) -> None:
        with closing(self.connect()) as conn, conn:
            conn.executemany(
                "insert into feedback_scores (challenge_id, name, value) values (?, ?, ?) "
                "on conflict(challenge_id, name) do update set value = excluded.value",
                [(cid, name or self.judge_score_name, value) for cid, value in scores.items()],
            )

    def run_experiment(
        self,
        name: str,
        items: list[DatasetItem],
        task: ExperimentTask,
        experiment_name: str,
        experiment_config: dict[str, Any],
        threads: int,
    ) -> ExperimentRecord:
        rows = evaluate_locally(items, task, threads)
        experiment_id = str(uuid.uuid4())
        with closing(self.connect()) as conn, conn:
            conn.execute(
                "insert into experiments (id, dataset_name, name, created_at, config, results) values (?, ?, ?, ?, ?, ?)",
                (
                    experiment_id,
                    name,
                    experiment_name,
                    datetime.now(timezone.utc).isoformat(),
                    json.dumps(experiment_config, sort_keys=True),
                    json.dumps([row.model_dump() for row in rows]),
                ),
            )
        return ExperimentRecord(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            location=f"{self.path} (table experiments)",
            rows=rows,
        )

    def experiments(self, name: str) -> list[dict[str, Any]]:
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "select id, name, created_at, config, results from experiments where dataset_name = ? order by created_at",
                (name,),
            ).fetchall()
        return [
            {"id": r[0], "name": r[1], "created_at": r[2], "config": json.loads(r[3]), "results": json.loads(r[4])}
            for r in rows
        ]

    def dataset_names(self) -> list[str]:
        with closing(self.connect()) as conn:
            return [row[0] for row in conn.execute("select name from datasets order by name")]

    def item_payloads(self, name: str) -> list[dict[str, Any]]:
        return [item.model_dump() for item in self.read_items(name)]
