"""DatasetStore: where evaluation datasets, their items and the judge's scores live.

One interface, two backends: ``dataset_store_opik`` (production, the ``opik`` SDK) and
``dataset_store_local`` (the embedded default, SQLite). The interface imports neither SDK. ``sync``
is the same for both: the protocol in ``core.sync`` over the primitive operations below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable

from dagster import ConfigurableResource
from pydantic import Field

from skill_pipeline.core.composition import Composition
from skill_pipeline.core.experiment import ExperimentRecord, ExperimentTask
from skill_pipeline.core.sync import DatasetSyncError, sync_dataset
from skill_pipeline.core.generation import SyntheticScenario
from skill_pipeline.models import DatasetItem, Skill, SyncReport

__all__ = ["DatasetStore", "DatasetSyncError", "ExperimentRecord", "ExperimentTask"]


class DatasetStore(ConfigurableResource, ABC):
    """What the pipeline does with datasets. Adapters implement the primitive operations and translate
    their backend's errors; the sync protocol itself is ``core.sync``."""

    judge_score_name: str = Field(
        default="judge_composite", description="feedback score name that holds the LLM judge's composite score"
    )

    @property
    @abstractmethod
    def backend(self) -> str:
        """Name for messages and metadata (``Opik``, ``local dataset store``)."""

    @property
    @abstractmethod
    def is_remote(self) -> bool:
        """True for a real service: offline scenarios must never be written to one."""

    def dataset_location(self, name: str) -> str:
        """Where a user opens dataset ``name``: a URL for a service, a path for a file."""
        return f"{self.backend}: {name}"

    @abstractmethod
    def dataset_exists(self, name: str) -> bool:
        """Whether dataset ``name`` exists (the sensor backfills skills without one)."""

    @abstractmethod
    def ensure_dataset(self, name: str, description: str) -> None:
        """Get or create; safe when two runs create the same dataset at once."""

    @abstractmethod
    def read_items(self, name: str) -> list[DatasetItem]:
        """Every item of the dataset; [] when it does not exist."""

    @abstractmethod
    def write_items(self, name: str, items: list[DatasetItem]) -> None:
        """Insert or replace by id."""

    @abstractmethod
    def delete_items(self, name: str, ids: list[str]) -> None:
        """Delete by id, only ids this dataset holds."""

    @abstractmethod
    def dataset_version(self, name: str) -> str | None:
        """The latest version's name, or None when the backend keeps none."""

    @abstractmethod
    def read_pool(self, skill_id: str) -> list[SyntheticScenario]:
        """Every scenario in the skill's durable pool (``core.scenario_pool``); [] when it has none."""

    @abstractmethod
    def write_pool(self, skill: Skill, scenarios: list[SyntheticScenario]) -> None:
        """Store scenarios in the skill's pool, replacing any stored under the same item key."""

    @abstractmethod
    def judge_scores(self, challenge_ids: Iterable[str]) -> dict[str, float]:
        """The judge's composite score per challenge id; a challenge without one is absent."""

    @abstractmethod
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

    def sync(self, name: str, description: str, composition: Composition) -> SyncReport:
        """Make dataset ``name`` hold ``composition`` (``core.sync``: insert, verify, delete, verify)."""
        return sync_dataset(self, name, description, composition)
