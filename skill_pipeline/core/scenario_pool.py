"""The durable scenario pool: every synthetic scenario a skill has paid for, kept by the dataset store.

The pool is the system of record for synthetic scenarios (the IO manager's output is only a view of
it): a rerun, a retried run, a promotion run and a run on another machine read it from the store.
It is keyed by ``item_key`` (slot-keyed, ``synthetic-dXX-sY``): writing a scenario for a key
replaces the one stored there. Backends that store datasets (Opik) keep it in a companion dataset
per skill, ``skill_{id}_scenario_pool``, whose items carry a scenario row in ``input``.
"""

from __future__ import annotations

from typing import Iterable

from pydantic import ValidationError

from skill_pipeline.core.generation import SyntheticScenario, item_id
from skill_pipeline.models import DatasetItem, Skill

POOL_DESCRIPTION = (
    "skill-pipeline's scenario pool for skill {skill_id}: every synthetic scenario paid for, the "
    "system of record the evaluation dataset skill_{skill_id}_scenarios draws from. Not an "
    "evaluation dataset: do not run experiments on it."
)


class ScenarioPoolError(ValueError):
    """A stored pool entry could not be read back: names the skill and the store."""


def pool_dataset_name(skill_id: str) -> str:
    return f"skill_{skill_id}_scenario_pool"


def pool_description(skill_id: str) -> str:
    return POOL_DESCRIPTION.format(skill_id=skill_id)


def pool_item(skill: Skill, row: SyntheticScenario) -> DatasetItem:
    """A pool entry as a dataset item: deterministic UUIDv7 id from skill id + ``pool/`` + item key."""
    return DatasetItem(
        id=item_id(skill.id, f"pool/{row.item_key}", skill.created_at),
        input=row.model_dump(mode="json"),
        expected_output={},
        metadata={"source": "synthetic", "item_id": row.item_key, "pool": True},
    )


def pool_row(item: DatasetItem, skill_id: str, backend: str) -> SyntheticScenario:
    try:
        return SyntheticScenario.model_validate(item.input)
    except ValidationError as exc:
        raise ScenarioPoolError(
            f"{backend}: pool entry {item.item_key} of skill {skill_id} is not a scenario: {exc.errors()[0]['msg']}"
        ) from None


def merge_pool(stored: Iterable[SyntheticScenario], new: Iterable[SyntheticScenario]) -> list[SyntheticScenario]:
    """``stored`` with ``new`` written over it by item key, in (difficulty, slot) order."""
    by_key = {row.item_key: row for row in stored}
    by_key.update({row.item_key: row for row in new})
    return sorted(by_key.values(), key=lambda r: (r.difficulty, r.slot))
