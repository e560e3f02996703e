"""DatasetStore: where evaluation datasets, their items and the judge's scores live.

Production is Opik through the ``opik`` SDK; the embedded default is a local SQLite file with the
same operations. ``sync`` is shared: it inserts before it deletes and reads back after each step,
so a sync that fails half-way leaves the dataset no smaller than before and a silently dropped
write is caught.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import tenacity
from dagster import ConfigurableResource
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from skill_pipeline.core.composition import Composition
from skill_pipeline.core.experiment import ScoreRow
from skill_pipeline.core.metrics import score_challenge, score_values
from skill_pipeline.models import DatasetItem, SyncReport


class DatasetSyncError(RuntimeError):
    pass


ExperimentTask = Callable[[DatasetItem], dict[str, Any]]


class ExperimentRecord(BaseModel):
    """One experiment over a dataset: where it is recorded and each item's scores."""

    experiment_id: str
    experiment_name: str
    location: str
    rows: list[ScoreRow]


def score_row(item: DatasetItem, output: dict[str, Any], scores: dict[str, float]) -> ScoreRow:
    usage = output.get("usage") or {}
    return ScoreRow(
        item_id=item.id,
        difficulty=item.difficulty,
        source=item.source,
        scores=scores,
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
    )


def evaluate_locally(items: list[DatasetItem], task: ExperimentTask, threads: int) -> list[ScoreRow]:
    """The experiment without a server: the same task and the same Opik metric objects."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outputs = list(pool.map(task, items))
    return [
        score_row(item, output, score_values(score_challenge(output, item))) for item, output in zip(items, outputs)
    ]


class DatasetStore(ConfigurableResource):
    """Interface. Subclasses implement the primitive operations; ``sync`` is shared."""

    judge_score_name: str = Field(
        default="judge_composite", description="feedback score name that holds the LLM judge's composite score"
    )

    @property
    def backend(self) -> str:
        raise NotImplementedError

    @property
    def is_remote(self) -> bool:
        """True for a real service: offline scenarios must never be written to one."""
        raise NotImplementedError

    def dataset_exists(self, name: str) -> bool:
        raise NotImplementedError

    def ensure_dataset(self, name: str, description: str) -> None:
        raise NotImplementedError

    def read_items(self, name: str) -> list[DatasetItem]:
        """Every item of the dataset; [] when it does not exist."""
        raise NotImplementedError

    def write_items(self, name: str, items: list[DatasetItem]) -> None:
        """Insert or replace by id."""
        raise NotImplementedError

    def delete_items(self, name: str, ids: list[str]) -> None:
        raise NotImplementedError

    def dataset_version(self, name: str) -> str | None:
        raise NotImplementedError

    def judge_scores(self, challenge_ids: Iterable[str]) -> dict[str, float]:
        """The judge's composite score per challenge id; a challenge without one is absent."""
        raise NotImplementedError

    def run_experiment(
        self,
        name: str,
        items: list[DatasetItem],
        task: ExperimentTask,
        experiment_name: str,
        experiment_config: dict[str, Any],
        threads: int,
    ) -> ExperimentRecord:
        """Run ``task`` over the dataset's items, score every output with ``core.metrics`` and record
        the experiment where this store keeps them."""
        raise NotImplementedError

    def sync(self, name: str, description: str, composition: Composition) -> SyncReport:
        self.ensure_dataset(name, description)
        if composition.to_write:
            self.write_items(name, composition.to_write)
            self._verify(name, {item.id: item.content_hash for item in composition.to_write}, "write")
        if composition.to_delete:
            self.delete_items(name, composition.to_delete)
            stored = {item.id for item in self.read_items(name)}
            left = stored & set(composition.to_delete)
            if left:
                raise DatasetSyncError(f"{self.backend}: {len(left)} displaced items of {name} are still stored")
        return SyncReport(
            dataset_name=name,
            inserted=composition.inserted,
            updated=composition.updated,
            deleted=len(composition.to_delete),
            unchanged=composition.unchanged,
            version=self.dataset_version(name),
        )

    def _verify(self, name: str, expected: dict[str, str], step: str) -> None:
        stored = {item.id: item.content_hash for item in self.read_items(name)}
        missing = [item_id for item_id, digest in expected.items() if stored.get(item_id) != digest]
        if missing:
            raise DatasetSyncError(
                f"{self.backend}: after the {step} of {name}, {len(missing)} of {len(expected)} items "
                f"are missing or differ (first: {missing[0]}); nothing was deleted"
            )


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
    """Embedded default: datasets, items by id, judge feedback scores and experiments in SQLite."""

    path: str = Field(description="SQLite file of the local dataset store")
    seed_demo: bool = Field(
        default=True, description="seed the demo app's judge scores when the feedback table is empty"
    )

    @property
    def backend(self) -> str:
        return "local dataset store"

    @property
    def is_remote(self) -> bool:
        return False

    def connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("pragma journal_mode=wal")
        conn.executescript(DATASET_SCHEMA)
        if self.seed_demo and conn.execute("select count(*) from feedback_scores").fetchone()[0] == 0:
            from skill_pipeline.demo.seed import demo_judge_scores

            with conn:
                conn.executemany(
                    "insert or ignore into feedback_scores (challenge_id, name, value) values (?, ?, ?)",
                    [(cid, self.judge_score_name, v) for cid, v in demo_judge_scores().items()],
                )
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


# ------------------------------------------------------------------------------------------------
# Opik (production): the ``opik`` SDK against an Opik server (``OPIK_URL_OVERRIDE``) or Comet cloud.


if TYPE_CHECKING:  # the SDK is imported lazily: a local-only run never pays for it
    import opik
    from opik.api_objects.dataset.dataset import Dataset as OpikDataset

OPIK_LOGGER = logging.getLogger("skill_pipeline.resources.dataset_store.opik")

# Opik reserves ``id``, ``source``, ``trace_id`` and ``span_id`` at the top of an item; everything
# else lands in the item's ``data``. The item ``source`` must be one Opik accepts (manual | trace |
# span | sdk); provenance (synthetic | real_world) stays in ``metadata.source``.
OPIK_ITEM_SOURCE = "sdk"
# Trace fields the judge-score search does not need (``start_time`` must stay: the SDK requires it).
OPIK_TRACE_EXCLUDE = [
    "input",
    "output",
    "tags",
    "usage",
    "error_info",
    "comments",
    "guardrails_validations",
    "span_feedback_scores",
]
RETRYABLE_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# One Opik client per resource instance, built on first use; threads of one step share it.
_OPIK_CLIENT_LOCK = threading.Lock()


class OpikDatasetStoreError(DatasetSyncError):
    """An Opik call failed. The message names Opik and the dataset (or project), never the api key."""


class _TimedOut(Exception):
    """An SDK call outlived our deadline (the SDK retries writes and searches answered 429 forever)."""


def _describe(exc: BaseException) -> str:
    """A short account of an SDK or transport error, without headers (they may echo credentials)."""
    from opik.rest_api.core.api_error import ApiError

    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, default=str)
        return f"HTTP {exc.status_code}: {body[:300]}"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text[:300]}"


def _is_retryable(exc: BaseException) -> bool:
    """Worth another attempt through a fresh dataset handle: overload, server errors, lost connections."""
    import httpx
    from opik.rest_api.core.api_error import ApiError

    if isinstance(exc, ApiError):
        return exc.status_code in RETRYABLE_HTTP_STATUS
    return isinstance(exc, (httpx.TransportError, ConnectionError))


def _status(exc: BaseException) -> int | None:
    from opik.rest_api.core.api_error import ApiError

    return exc.status_code if isinstance(exc, ApiError) else None


def _is_uuid7(value: str) -> bool:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return parsed.version == 7 and parsed.variant == uuid.RFC_4122


def _trace_challenge_id(trace: Any) -> str | None:
    metadata = trace.metadata if isinstance(trace.metadata, dict) else {}
    value = metadata.get("challenge_id")
    return None if value is None else str(value)


def _oql_string(value: str) -> str:
    """A double-quoted OQL string literal (OQL escapes a quote by doubling it)."""
    return '"' + value.replace('"', '""') + '"'


def to_opik_item(item: DatasetItem) -> dict[str, Any]:
    """The flat dict ``Dataset.insert`` takes: reserved keys at the top, the seed's shape in ``data``."""
    return {
        "id": item.id,
        "source": OPIK_ITEM_SOURCE,
        "input": item.input,
        "expected_output": item.expected_output,
        "metadata": item.metadata,
    }


def from_opik_item(row: dict[str, Any], dataset: str) -> DatasetItem:
    """An item as ``Dataset.get_items`` returns it (``id`` plus the item's data) back into ours."""
    try:
        return DatasetItem(
            id=str(row["id"]),
            input=row.get("input"),
            expected_output=row.get("expected_output"),
            metadata=row.get("metadata"),
        )
    except (ValidationError, KeyError, TypeError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else repr(exc)
        raise OpikDatasetStoreError(
            f"Opik: item {row.get('id')} of dataset {dataset} is not in the pipeline's shape "
            f"(input, expected_output, metadata with source and item_id): {reason}"
        ) from None


class OpikDatasetStore(DatasetStore):
    """Datasets, items and judge scores in Opik, through the ``opik`` SDK (2.2.x).

    What the SDK does that this class works around (see DESIGN.md, "Facts about the dependencies"):
    a ``Dataset`` object remembers the content hash of every item sent through it and silently
    drops a later item with the same hash -- even when the first send failed -- so every write
    goes through a fresh ``client.get_dataset(...)`` with deduplication off (our diff already
    decides what to write; an upsert by id is idempotent). A write answered 429 is retried by the
    SDK without end, so writes and deletes run under a deadline of our own
    (``write_timeout_seconds``) on a daemon thread, sequentially (``num_threads=1``) so that no
    SDK worker pool outlives a timed-out write and blocks the process at exit.
    """

    url: str | None = Field(default=None, description="Opik API base URL (OPIK_URL_OVERRIDE); None = the SDK's default")
    api_key: str | None = Field(default=None, description="Opik API key (OPIK_API_KEY); not needed by a local Opik")
    workspace: str | None = Field(default=None, description="Opik workspace (OPIK_WORKSPACE)")
    project_name: str = Field(
        default="skill-pipeline", description="Opik project the datasets belong to and the judge's traces are in"
    )
    write_timeout_seconds: float = Field(
        default=120, gt=0, description="bound on one write or delete, retries included (the SDK retries 429 forever)"
    )
    write_attempts: int = Field(
        default=3, ge=1, description="attempts of a failed write, each through a fresh dataset handle"
    )
    retry_backoff_seconds: float = Field(default=2.0, ge=0, description="first wait between our own write attempts")
    search_timeout_seconds: float = Field(
        default=300, gt=0, description="bound on one judge_scores call (the SDK retries a search answered 429 forever)"
    )
    judge_concurrency: int = Field(
        default=8, ge=1, description="trace searches in flight at once (OQL has no OR/IN on metadata: one per challenge)"
    )

    _client: Any = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "Opik"

    @property
    def is_remote(self) -> bool:
        return True

    # -------------------------------------------------------------------------------- plumbing
    def _redact(self, text: str) -> str:
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text

    def _error(self, what: str, exc: BaseException | None = None, detail: str | None = None) -> OpikDatasetStoreError:
        reason = detail if detail is not None else _describe(exc) if exc is not None else "unknown error"
        return OpikDatasetStoreError(self._redact(f"Opik: {what} failed: {reason}"))

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Re-raise anything the SDK raises as an error naming Opik and ``what``; no exception chain,
        so neither a message nor a traceback can carry the key."""
        try:
            yield
        except OpikDatasetStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure is reported the same way
            raise self._error(what, exc) from None

    def client(self) -> "opik.Opik":
        """The Opik client, built on first use with everything passed explicitly (no config file)."""
        with _OPIK_CLIENT_LOCK:
            if self._client is None:
                with self._errors(f"connecting to project {self.project_name}"):
                    import opik

                    self._client = opik.Opik(
                        project_name=self.project_name,
                        workspace=self.workspace,
                        host=self.url,
                        api_key=self.api_key,
                    )
            return self._client

    def close(self) -> None:
        """Release the SDK's connection resources (threads, pool).

        Not wired to ``teardown_after_execution``: overriding it makes Dagster refuse
        ``process_config_and_initialize``. The SDK shares one connection bundle per configuration
        and closes it at process exit, so a run that never calls this leaks nothing.
        """
        with _OPIK_CLIENT_LOCK:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.end(timeout=5)
            except Exception as exc:  # noqa: BLE001 - closing must not fail a step that succeeded
                OPIK_LOGGER.warning("Opik: closing the client failed: %s", self._redact(_describe(exc)))

    def _dataset(self, name: str) -> "OpikDataset | None":
        """A fresh dataset handle, or None when Opik answers 404."""
        client = self.client()
        try:
            return client.get_dataset(name, project_name=self.project_name)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) == 404:
                return None
            raise self._error(f"reading dataset {name} (project {self.project_name})", exc) from None

    def _require(self, name: str, what: str) -> "OpikDataset":
        dataset = self._dataset(name)
        if dataset is None:
            raise self._error(f"{what} dataset {name}", detail=f"it does not exist in project {self.project_name}")
        return dataset

    def _within(self, deadline: float, operation: Callable[[], None], label: str) -> None:
        """Run ``operation`` on a daemon thread and give up on it at ``deadline``.

        The SDK cannot be told to stop a write it is retrying, so a timed-out write may still land
        later; it is an upsert of what we wanted written, and the next sync reads back and re-diffs.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut()
        outcome: dict[str, BaseException] = {}

        def run() -> None:
            try:
                operation()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"opik-{label}", daemon=True)
        worker.start()
        worker.join(remaining)
        if worker.is_alive():
            raise _TimedOut()
        if "error" in outcome:
            raise outcome["error"]

    def _write(self, name: str, what: str, operation: Callable[["OpikDataset"], None]) -> None:
        """A dataset mutation with our own bounded retries, each through a fresh dataset handle."""
        deadline = time.monotonic() + self.write_timeout_seconds
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.write_attempts) | tenacity.stop_after_delay(self.write_timeout_seconds),
            wait=tenacity.wait_exponential(multiplier=self.retry_backoff_seconds, max=30),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=lambda state: OPIK_LOGGER.warning(
                "Opik: %s dataset %s failed (attempt %d of %d): %s; retrying through a fresh dataset handle",
                what,
                name,
                state.attempt_number,
                self.write_attempts,
                self._redact(_describe(state.outcome.exception())) if state.outcome else "",
            ),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    dataset = self._require(name, what)
                    self._within(deadline, lambda: operation(dataset), what.replace(" ", "-"))
        except _TimedOut:
            raise self._error(
                f"{what} dataset {name}",
                detail=f"no answer within {self.write_timeout_seconds:g} s (Opik retries a write answered 429 "
                "without end); it may still land, and the next sync reads back what is stored",
            ) from None
        except OpikDatasetStoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"{what} dataset {name}", exc) from None

    # -------------------------------------------------------------------------------- interface
    def dataset_exists(self, name: str) -> bool:
        return self._dataset(name) is not None

    def ensure_dataset(self, name: str, description: str) -> None:
        """Get or create. Two runs creating the same dataset at once: the loser's 409 means it exists."""
        if self._dataset(name) is not None:
            return
        try:
            self.client().create_dataset(name, description=description, project_name=self.project_name)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) != 409:
                raise self._error(f"creating dataset {name} (project {self.project_name})", exc) from None
            if self._dataset(name) is None:
                raise self._error(
                    f"creating dataset {name} (project {self.project_name})",
                    detail="Opik answered 409 (exists) but the dataset cannot be read back",
                ) from None
            OPIK_LOGGER.info("Opik: dataset %s was created concurrently by another run; using it", name)

    def read_items(self, name: str) -> list[DatasetItem]:
        """Every item of the latest version (the SDK pins all pages of one read to it)."""
        dataset = self._dataset(name)
        if dataset is None:
            return []
        with self._errors(f"reading the items of dataset {name}"):
            rows = dataset.get_items()
        items = [from_opik_item(row, name) for row in rows]
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise self._error(f"reading the items of dataset {name}", detail=f"item {duplicate} came back twice")
        return items

    def write_items(self, name: str, items: list[DatasetItem]) -> None:
        """Insert or replace by id; one call is one new dataset version."""
        if not items:
            return
        bad = [item.id for item in items if not _is_uuid7(item.id)]
        if bad:
            raise self._error(
                f"writing to dataset {name}", detail=f"item id {bad[0]} is not a UUID version 7 (Opik answers 400)"
            )
        payloads = [to_opik_item(item) for item in items]
        self._write(
            name,
            "writing to",
            lambda dataset: dataset.insert(payloads, num_threads=1, deduplication=False),
        )

    def delete_items(self, name: str, ids: list[str]) -> None:
        """Delete by id, only ids this dataset holds: Opik's delete endpoint is not scoped to a dataset."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        dataset = self._dataset(name)
        if dataset is None:
            return
        with self._errors(f"reading the items of dataset {name} before a delete"):
            present = {str(row["id"]) for row in dataset.get_items()}
        targets = [i for i in wanted if i in present]
        if len(targets) < len(wanted):
            OPIK_LOGGER.warning(
                "Opik: %d of %d ids to delete are not in dataset %s; skipped",
                len(wanted) - len(targets),
                len(wanted),
                name,
            )
        if targets:
            self._write(name, "deleting from", lambda fresh: fresh.delete(targets))

    def dataset_version(self, name: str) -> str | None:
        """Name of the latest version (``v3``), which ``get_items`` reads are pinned to."""
        dataset = self._dataset(name)
        if dataset is None:
            return None
        with self._errors(f"reading the versions of dataset {name}"):
            info = dataset.get_version_info()
        if info is None:
            return None
        return info.version_name or info.version_hash or info.id

    def judge_scores(self, challenge_ids: Iterable[str]) -> dict[str, float]:
        """Mean of the judge's feedback score over the traces tagged with each challenge id.

        OQL has neither OR nor IN on metadata, so it is one search per challenge, at most
        ``judge_concurrency`` at once, all within ``search_timeout_seconds`` (the SDK retries a
        search answered 429 without end). A challenge without a judged trace is absent, never assumed.
        """
        ids = list(dict.fromkeys(str(c) for c in challenge_ids))
        if not ids:
            return {}
        client = self.client()
        deadline = time.monotonic() + self.search_timeout_seconds
        missing_project: list[str] = []

        def score(challenge_id: str) -> float | None:
            what = f"searching the judge traces of challenge {challenge_id} (project {self.project_name})"
            found: list[Any] = []

            def search() -> None:
                found.extend(
                    client.search_traces(
                        project_name=self.project_name,
                        filter_string=f"metadata.challenge_id = {_oql_string(challenge_id)}",
                        exclude=OPIK_TRACE_EXCLUDE,
                    )
                )

            try:
                self._within(deadline, search, "judge-search")
            except _TimedOut:
                raise self._error(
                    what, detail=f"no answer within {self.search_timeout_seconds:g} s (Opik retries a 429 without end)"
                ) from None
            except Exception as exc:  # noqa: BLE001
                if _status(exc) == 404:
                    missing_project.append(challenge_id)
                    return None
                raise self._error(what, exc) from None
            values = [
                float(feedback.value)
                for trace in found
                if _trace_challenge_id(trace) == challenge_id  # guard against a filter the backend ignored
                for feedback in trace.feedback_scores or []
                if feedback.name == self.judge_score_name and math.isfinite(float(feedback.value))
            ]
            return sum(values) / len(values) if values else None

        with ThreadPoolExecutor(max_workers=min(self.judge_concurrency, len(ids)), thread_name_prefix="opik-judge") as pool:
            results = list(pool.map(score, ids))
        if missing_project:
            OPIK_LOGGER.warning(
                "Opik: project %s has no traces (404); %d challenges have no judge score",
                self.project_name,
                len(missing_project),
            )
        return {cid: value for cid, value in zip(ids, results) if value is not None}

    # -------------------------------------------------------------------------------- experiments
    def run_experiment(
        self,
        name: str,
        items: list[DatasetItem],
        task: ExperimentTask,
        experiment_name: str,
        experiment_config: dict[str, Any],
        threads: int,
    ) -> ExperimentRecord:
        """``opik.evaluate`` over the dataset, scored with ``core.metrics``, recorded as an Opik experiment.

        Why it is more than one call:

        * ``opik.evaluate`` takes no client: it uses the *global* one, which, when unset, is built
          from the environment and ``~/.opik.config`` -- possibly another host or workspace, and
          without our key. Ours is installed for this call only, in a copied context
          (``set_global_client(..., context_wise=True)``), so it leaks into no other thread or later
          call; the evaluation engine hands it to its own worker threads.
        * Traces, spans, feedback scores and experiment items go out in background batches; a batch
          the backend refuses three times is dropped, and the only sign is the SDK's data-loss
          tracker. ``evaluate`` flushes by itself and ignores the outcome, so a ``flush()`` after it
          would only see drops from then on: the drop count is read before the evaluation and
          after our own flush, and any drop (or a flush that did not drain) fails the call.
        * The task receives the item as Opik holds it (its data plus ``id``); it is turned back
          into our ``DatasetItem`` (an item not in our shape fails, naming its id). What the task
          raises (the LLM failing for good, say) is re-raised as it is: it names its own service
          and is no Opik failure.
        * ``project_name`` is deprecated in ``evaluate`` and ignored (with a warning) when the
          dataset belongs to a project, as ours do: it is passed only for a dataset without one.

        The experiment covers the dataset's latest version, read by ``evaluate`` itself; the rows
        are built from what it evaluated (a warning says when that differs from ``items``).
        """
        import contextvars

        import opik

        from skill_pipeline.core.metrics import all_metrics

        what = f"running experiment {experiment_name} on dataset {name} (project {self.project_name})"
        client = self.client()
        dataset = self._require(name, "running an experiment on")
        lock = threading.Lock()
        evaluated: dict[str, DatasetItem] = {}
        task_failures: list[Exception] = []

        def opik_task(row: dict[str, Any]) -> dict[str, Any]:
            try:
                item = from_opik_item(row, name)
                with lock:
                    evaluated[item.id] = item
                return task(item)
            except Exception as exc:
                with lock:
                    task_failures.append(exc)
                raise

        def evaluate() -> Any:
            opik.set_global_client(client, context_wise=True)
            return opik.evaluate(
                dataset=dataset,
                task=opik_task,
                scoring_metrics=all_metrics(),
                experiment_name=experiment_name,
                experiment_config=dict(experiment_config),
                project_name=None if getattr(dataset, "project_name", None) else self.project_name,
                task_threads=max(1, threads),
                verbose=0,
            )

        with self._errors(f"reading the SDK's delivery report before {what}"):
            drops_before = client.get_errors_report().total_dropped_messages
        failure: Exception | None = None
        result: Any = None
        try:
            result = contextvars.copy_context().run(evaluate)
        except Exception as exc:  # noqa: BLE001 - sorted below into the task's own error or an Opik one
            with lock:
                failure = task_failures[0] if task_failures else self._error(what, exc)
        if failure is not None:
            # Raised outside the ``except`` block: the SDK's exception is not even the implicit context.
            raise failure

        flushed = client.flush(timeout=max(1, math.ceil(self.write_timeout_seconds)))
        report = client.get_errors_report()
        dropped = report.total_dropped_messages - drops_before
        if not flushed or dropped > 0:
            # Message types and statuses only: the SDK's ``detail`` of a drop is the error's text.
            recent = report.failures[-dropped:] if dropped > 0 else ()
            lost = sorted(
                {info.message_type + (f" (HTTP {info.status_code})" if info.status_code else "") for info in recent}
            )
            raise self._error(
                what,
                detail=(
                    f"the SDK did not deliver everything to Opik (flush returned {flushed}; {max(dropped, 0)} "
                    f"batches dropped after its retries{': ' + ', '.join(lost) if lost else ''}); experiment "
                    f"{result.experiment_id} is incomplete in Opik"
                ),
            )

        order = {item.id: position for position, item in enumerate(items)}
        rows: list[tuple[int, str, ScoreRow]] = []
        for test_result in result.test_results:
            case = test_result.test_case
            item_id = str(case.dataset_item_id)
            item = evaluated.get(item_id) or from_opik_item({**case.dataset_item_content, "id": item_id}, name)
            row = score_row(item, case.task_output or {}, score_values(test_result.score_results))
            rows.append((order.get(item_id, len(order)), item_id, row))
        rows.sort(key=lambda entry: (entry[0], entry[1]))
        evaluated_ids = {entry[1] for entry in rows}
        if evaluated_ids != set(order):
            OPIK_LOGGER.warning(
                "Opik: experiment %s evaluated %d items of dataset %s, %d of them not among the %d read "
                "before it (the dataset changed in between)",
                experiment_name,
                len(evaluated_ids),
                name,
                len(evaluated_ids - set(order)),
                len(order),
            )
        location = result.experiment_url or f"Opik experiment {result.experiment_id} (project {self.project_name})"
        return ExperimentRecord(
            experiment_id=str(result.experiment_id),
            experiment_name=str(result.experiment_name or experiment_name),
            location=location,
            rows=[entry[2] for entry in rows],
        )
