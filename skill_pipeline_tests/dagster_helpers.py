"""Shared set-up for tests that run the Dagster definitions on a real instance."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import dagster as dg

from skill_pipeline.assets.dataset import skill_dataset
from skill_pipeline.assets.generation import synthetic_scenarios
from skill_pipeline.assets.promotion import gold_standard_candidates
from skill_pipeline.checks import skill_dataset_checks, synthetic_scenarios_are_complete
from skill_pipeline.demo.seed import seed_app_database
from skill_pipeline.demo.stores import seed_demo_stores
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.llm_offline import OfflineLLM
from skill_pipeline.resources.promotion_policy import PromotionPolicy
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore, connect
from skill_pipeline.sensors import skill_sensor

ALL_ASSETS = [synthetic_scenarios, gold_standard_candidates, skill_dataset, synthetic_scenarios_are_complete, skill_dataset_checks]


def local_resources(folder: Path, llm: dg.ConfigurableResource | None = None, seed: bool = True) -> dict:
    """The embedded resources on ``folder``, seeded with the demo app unless ``seed`` is False."""
    skill_store = SqliteSkillStore(path=str(folder / "app.sqlite"))
    dataset_store = LocalDatasetStore(path=str(folder / "datasets.sqlite"))
    if seed:
        seed_demo_stores(skill_store, dataset_store)
    return {
        "skill_store": skill_store,
        "dataset_store": dataset_store,
        "llm": llm or OfflineLLM(),
        "promotion_policy": PromotionPolicy(),
    }


def seeded_app(path: Path) -> SqliteSkillStore:
    """A local app database holding the demo app (the store itself starts empty)."""
    store = SqliteSkillStore(path=str(path))
    with closing(connect(path)) as conn:
        seed_app_database(conn)
    return store


def tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None) -> dg.SensorResult:
    """One evaluation of the skill sensor, applying its partition requests as the daemon does."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"skill_store": resources["skill_store"]})
    result = skill_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def materialize_skill(
    instance, resources, skill_id, selection=None, run_config=None, raise_on_error=True
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ALL_ASSETS,
        instance=instance,
        partition_key=skill_id,
        resources=resources,
        selection=selection,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialised")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
