"""Opik (production): datasets, items, judge scores and experiments through the ``opik`` SDK.

The SDK is imported on first use, not at module import: the code location loads without it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal

import tenacity
from pydantic import Field, PrivateAttr

from skill_pipeline.core.experiment import ExperimentRecord, ExperimentTask
from skill_pipeline.core.generation import SyntheticScenario
from skill_pipeline.core.scenario_pool import pool_dataset_name, pool_description, pool_item, pool_row
from skill_pipeline.models import DatasetItem, Skill
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.opik_judge import judge_scores_batched, judge_scores_per_challenge
from skill_pipeline.resources.opik_support import (
    OPIK_TRACE_EXCLUDE,
    OpikDatasetStoreError,
    TimedOut,
    describe,
    from_opik_item,
    is_retryable,
    is_uuid7,
    oql_string,
    run_within,
    status_of,
    to_opik_item,
    trace_challenge_id,
)
from skill_pipeline.resources.redaction import redact

if TYPE_CHECKING:
    import opik
    from opik.api_objects.dataset.dataset import Dataset as OpikDataset

OPIK_LOGGER = logging.getLogger("skill_pipeline.resources.dataset_store.opik")

# One Opik client per resource instance, built on first use; threads of one step share it.
_OPIK_CLIENT_LOCK = threading.Lock()


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
        default=8, ge=1, description="per-challenge trace searches in flight at once (OQL has no OR/IN on metadata)"
    )
    judge_lookup: Literal["auto", "batched", "per_challenge"] = Field(
        default="auto",
        description="batched: one paged search of the project's judged traces, matched on the client; "
        "per_challenge: one search per challenge; auto: batched from judge_batch_min_challenges ids",
    )
    judge_batch_min_challenges: int = Field(
        default=20, ge=1, description="auto: fewer challenge ids than this are looked up one by one"
    )
    judge_batch_max_traces: int = Field(
        default=200_000, ge=1,
        description="a batched search reading more judged traces than this falls back to per-challenge searches",
    )

    _client: Any = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "Opik"

    @property
    def is_remote(self) -> bool:
        return True

    def dataset_location(self, name: str) -> str:
        """The dataset's page in the Opik UI (the UI is served where the API's ``/api`` ends)."""
        base = (self.url or "https://www.comet.com/opik/api").rstrip("/")
        ui = f"{base.removesuffix('/api')}/{self.workspace or 'default'}/datasets"
        try:
            dataset = self._dataset(name)
        except Exception:  # a link is a courtesy: never fail the overview for it
            dataset = None
        return f"{ui}/{dataset.id}/items" if dataset is not None and getattr(dataset, "id", None) else ui

    # -------------------------------------------------------------------------------- plumbing
    def _redact(self, text: str) -> str:
        return redact(text, self.api_key)

    def _error(self, what: str, exc: BaseException | None = None, detail: str | None = None) -> OpikDatasetStoreError:
        reason = detail if detail is not None else describe(exc) if exc is not None else "unknown error"
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
                OPIK_LOGGER.warning("Opik: closing the client failed: %s", self._redact(describe(exc)))

    def _dataset(self, name: str) -> "OpikDataset | None":
        """A fresh dataset handle, or None when Opik answers 404."""
        client = self.client()
        try:
            return client.get_dataset(name, project_name=self.project_name)
        except Exception as exc:  # noqa: BLE001
            if status_of(exc) == 404:
                return None
            raise self._error(f"reading dataset {name} (project {self.project_name})", exc) from None

    def _require(self, name: str, what: str) -> "OpikDataset":
        dataset = self._dataset(name)
        if dataset is None:
            raise self._error(f"{what} dataset {name}", detail=f"it does not exist in project {self.project_name}")
        return dataset

    def _write(self, name: str, what: str, operation: Callable[["OpikDataset"], None]) -> None:
        """A dataset mutation with our own bounded retries, each through a fresh dataset handle."""
        deadline = time.monotonic() + self.write_timeout_seconds
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.write_attempts) | tenacity.stop_after_delay(self.write_timeout_seconds),
            wait=tenacity.wait_exponential(multiplier=self.retry_backoff_seconds, max=30),
            retry=tenacity.retry_if_exception(is_retryable),
            before_sleep=lambda state: OPIK_LOGGER.warning(
                "Opik: %s dataset %s failed (attempt %d of %d): %s; retrying through a fresh dataset handle",
                what,
                name,
                state.attempt_number,
                self.write_attempts,
                self._redact(describe(state.outcome.exception())) if state.outcome else "",
            ),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    dataset = self._require(name, what)
                    run_within(deadline, lambda: operation(dataset), what.replace(" ", "-"))
        except TimedOut:
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
            if status_of(exc) != 409:
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
        bad = [item.id for item in items if not is_uuid7(item.id)]
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

    def read_pool(self, skill_id: str) -> list[SyntheticScenario]:
        """The companion dataset ``skill_{id}_scenario_pool`` (``core.scenario_pool``)."""
        rows = [pool_row(item, skill_id, self.backend) for item in self.read_items(pool_dataset_name(skill_id))]
        return sorted(rows, key=lambda r: (r.difficulty, r.slot))

    def write_pool(self, skill: Skill, scenarios: list[SyntheticScenario]) -> None:
        """Upsert by deterministic id into the companion dataset, through the same bounded writes."""
        if not scenarios:
            return
        name = pool_dataset_name(skill.id)
        self.ensure_dataset(name, pool_description(skill.id))
        self.write_items(name, [pool_item(skill, row) for row in scenarios])

    def judge_scores(self, challenge_ids: Iterable[str]) -> dict[str, float]:
        """Mean of the judge's feedback score over the traces tagged with each challenge id.

        OQL has neither OR nor IN on metadata, so a lookup per challenge costs a request per
        challenge (3,000 challenges: 3,004 requests, 69 s at 100 ms a round trip). The batched
        lookup asks once for every trace of the project that carries the score
        (``feedback_scores.<name> is_not_empty``; the SDK pages it, 2,000 traces a request) and
        matches ``metadata.challenge_id`` on the client: the same traces, so the same means. It
        reads every judged trace of the project, so past ``judge_batch_max_traces`` it falls back
        to per-challenge searches (logged). Both run within ``search_timeout_seconds`` (the SDK
        retries a search answered 429 without end). A challenge without a judged trace is absent,
        never assumed.
        """
        ids = list(dict.fromkeys(str(c) for c in challenge_ids))
        if not ids:
            return {}
        deadline = time.monotonic() + self.search_timeout_seconds
        batched = self.judge_lookup == "batched" or (
            self.judge_lookup == "auto" and len(ids) >= self.judge_batch_min_challenges
        )
        if batched:
            scores = judge_scores_batched(self, ids, deadline)
            if scores is not None:
                return scores
        return judge_scores_per_challenge(self, ids, deadline)

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
        """``opik.evaluate`` over the dataset, recorded as an Opik experiment (``opik_experiment``)."""
        from skill_pipeline.resources.opik_experiment import run_opik_experiment

        return run_opik_experiment(self, name, items, task, experiment_name, experiment_config, threads)

    @property
    def logger(self) -> logging.Logger:
        return OPIK_LOGGER
