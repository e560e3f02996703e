"""The sync protocol: make a dataset hold exactly a composition, never losing what is stored.

Diff (done by ``core.composition``) → insert or replace → read back → delete the displaced →
read back. Inserting before deleting means a sync that fails half-way leaves the dataset no
smaller than before; reading back after each step catches a write a backend dropped silently
(Opik's SDK has done so). Only the primitive operations differ per backend: this module works on
any store that has them, and knows no SDK.
"""

from __future__ import annotations

from typing import Protocol

from skill_pipeline.core.composition import Composition
from skill_pipeline.models import DatasetItem, SyncReport


class DatasetSyncError(RuntimeError):
    """A sync did not leave the dataset as composed; the message says which step and which item."""


class ItemStore(Protocol):
    """The primitive operations the protocol needs (``resources.dataset_store.DatasetStore`` has them)."""

    @property
    def backend(self) -> str: ...

    def ensure_dataset(self, name: str, description: str) -> None: ...

    def read_items(self, name: str) -> list[DatasetItem]: ...

    def write_items(self, name: str, items: list[DatasetItem]) -> None: ...

    def delete_items(self, name: str, ids: list[str]) -> None: ...

    def dataset_version(self, name: str) -> str | None: ...


def sync_dataset(store: ItemStore, name: str, description: str, composition: Composition) -> SyncReport:
    """Apply ``composition`` to dataset ``name``: insert, verify, delete, verify."""
    store.ensure_dataset(name, description)
    if composition.to_write:
        store.write_items(name, composition.to_write)
        verify_written(store, name, {item.id: item.content_hash for item in composition.to_write}, "write")
    if composition.to_delete:
        store.delete_items(name, composition.to_delete)
        stored = {item.id for item in store.read_items(name)}
        left = stored & set(composition.to_delete)
        if left:
            raise DatasetSyncError(f"{store.backend}: {len(left)} displaced items of {name} are still stored")
    return SyncReport(
        dataset_name=name,
        inserted=composition.inserted,
        updated=composition.updated,
        deleted=len(composition.to_delete),
        unchanged=composition.unchanged,
        version=store.dataset_version(name),
    )


def verify_written(store: ItemStore, name: str, expected: dict[str, str], step: str) -> None:
    """Every expected id is stored with the expected content hash, or the sync stops before deleting."""
    stored = {item.id: item.content_hash for item in store.read_items(name)}
    missing = [item_id for item_id, digest in expected.items() if stored.get(item_id) != digest]
    if missing:
        raise DatasetSyncError(
            f"{store.backend}: after the {step} of {name}, {len(missing)} of {len(expected)} items "
            f"are missing or differ (first: {missing[0]}); nothing was deleted"
        )
