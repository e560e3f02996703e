"""The Dagster definitions on a real DagsterInstance: sensor, assets, checks, adoption, regeneration."""

import time
from contextlib import closing

import dagster as dg
import pytest

from skill_pipeline.demo.seed import DEMO_SKILLS, demo_skill_id
from skill_pipeline.models import dataset_name
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.llm_offline import OfflineLLM
from skill_pipeline_tests.dagster_helpers import check_results, local_resources, materialize_skill, metadata, tick

ACTIVE = [demo_skill_id(name) for name, _, active in DEMO_SKILLS if active]
INACTIVE = [demo_skill_id(name) for name, _, active in DEMO_SKILLS if not active]
SQL = demo_skill_id("SQL Querying")
NO_PROMOTION = {"ops": {"skill_dataset": {"config": {"max_promotions": 0}}}}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def resources(tmp_path):
    return local_resources(tmp_path)


class ForbiddenLLM(OfflineLLM):
    """Fails the test if the pipeline pays for scenarios it should have adopted."""

    def write_scenarios(self, request):
        raise AssertionError(f"unexpected LLM call for difficulty {request.difficulty}")


def test_first_tick_adds_partitions_and_requests_runs_in_one_tick(instance, resources):
    result = tick(instance, resources, cursor=None)
    assert sorted(instance.get_dynamic_partitions("skills")) == sorted(ACTIVE)
    assert sorted(r.partition_key for r in result.run_requests) == sorted(ACTIVE)
    assert not set(INACTIVE) & {r.partition_key for r in result.run_requests}
    assert len({r.run_key for r in result.run_requests}) == len(ACTIVE)

    second = tick(instance, resources, cursor=result.cursor)
    assert second.run_requests == [] and second.dynamic_partitions_requests == []


def test_materialising_a_skill_builds_a_balanced_dataset_and_a_rerun_writes_nothing(instance, resources):
    tick(instance, resources, cursor=None)
    first = materialize_skill(instance, resources, SQL, run_config=NO_PROMOTION)
    assert first.success
    meta = metadata(first, "skill_dataset")
    assert meta["item_count"] == 50 and meta["items_inserted"] == 50 and meta["items_deleted"] == 0
    assert meta["real_world_count"] == 0
    assert meta["dataset_name"] == dataset_name(SQL)
    checks = check_results(first)
    assert len(checks) == 7 and all(checks.values()), checks
    scenarios = metadata(first, "synthetic_scenarios")
    assert scenarios["scenarios"] == 50 and scenarios["source"] == "generated"
    assert "offline: 50" in scenarios["generators"]

    again = materialize_skill(instance, resources, SQL, run_config=NO_PROMOTION)
    meta = metadata(again, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"], meta["items_unchanged"]) == (0, 0, 0, 50)
    assert metadata(again, "synthetic_scenarios")["source"] == "adopted"


def test_existing_dataset_is_adopted_not_regenerated(tmp_path, resources):
    with dg.instance_for_test() as first_instance:
        tick(first_instance, resources, cursor=None)
        assert materialize_skill(first_instance, resources, SQL, run_config=NO_PROMOTION).success
    stored = resources["dataset_store"].read_items(dataset_name(SQL))

    # A fresh Dagster instance (no stored outputs), the same dataset store, an LLM that must not be called.
    adopting = {**resources, "llm": ForbiddenLLM()}
    with dg.instance_for_test() as fresh:
        tick(fresh, adopting, cursor=None)
        result = materialize_skill(fresh, adopting, SQL, run_config=NO_PROMOTION)
        assert result.success
        assert metadata(result, "synthetic_scenarios")["source"] == "adopted"
        assert metadata(result, "synthetic_scenarios")["llm_calls"] == 0
        assert metadata(result, "skill_dataset")["items_inserted"] == 0
    assert {i.id: i.content_hash for i in resources["dataset_store"].read_items(dataset_name(SQL))} == {
        i.id: i.content_hash for i in stored
    }


class Counting(OfflineLLM):
    """The offline writer, recording (difficulty, count) of every call; fails for good at ``fail_at``."""

    fail_at: int = 0

    def write_scenarios(self, request):
        CALLS.append((request.difficulty, request.count))
        if request.difficulty == self.fail_at:
            # Fail only once every first call is in flight: a failing run cancels the calls not yet
            # started (by design), and the offline writer is fast enough to race the thread pool.
            deadline = time.monotonic() + 10
            while len({d for d, _ in CALLS}) < 10 and time.monotonic() < deadline:
                time.sleep(0.005)
            raise RuntimeError("simulated outage")
        return super().write_scenarios(request)


CALLS: list = []


def test_a_full_rerun_of_a_skill_with_promoted_items_reads_the_pool_and_makes_no_llm_call(resources):
    with dg.instance_for_test() as first_instance:
        tick(first_instance, resources, cursor=None)
        first = materialize_skill(first_instance, resources, SQL)
        assert metadata(first, "skill_dataset")["real_world_count"] == 5
    # Every scenario paid for is in the store's pool, the 5 displaced ones included.
    assert len(resources["dataset_store"].read_pool(SQL)) == 50
    stored = {i.id: i.content_hash for i in resources["dataset_store"].read_items(dataset_name(SQL))}

    CALLS.clear()
    with dg.instance_for_test() as fresh:  # no stored outputs: the pool can only come from the store
        tick(fresh, resources, cursor=None)
        result = materialize_skill(fresh, {**resources, "llm": Counting()}, SQL, run_config=NO_PROMOTION)
    assert result.success and CALLS == []
    assert metadata(result, "synthetic_scenarios")["llm_calls"] == 0
    meta = metadata(result, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"]) == (0, 0, 0)
    assert {i.id: i.content_hash for i in resources["dataset_store"].read_items(dataset_name(SQL))} == stored


def test_a_retried_run_after_a_failure_pays_only_for_the_missing_difficulty(instance, resources):
    tick(instance, resources, cursor=None)
    CALLS.clear()
    failing = {**resources, "llm": Counting(fail_at=7, max_concurrency=10)}
    failed = materialize_skill(instance, failing, SQL, run_config=NO_PROMOTION, raise_on_error=False)
    assert not failed.success
    assert sorted(d for d, _ in CALLS) == list(range(1, 11))
    pooled = resources["dataset_store"].read_pool(SQL)
    assert sorted({r.difficulty for r in pooled}) == [d for d in range(1, 11) if d != 7] and len(pooled) == 45
    assert resources["dataset_store"].read_items(dataset_name(SQL)) == []

    CALLS.clear()
    with dg.instance_for_test() as fresh:
        tick(fresh, resources, cursor=None)
        retried = materialize_skill(fresh, {**resources, "llm": Counting()}, SQL, run_config=NO_PROMOTION)
    assert retried.success and CALLS == [(7, 5)]
    assert metadata(retried, "synthetic_scenarios")["source"] == "completed"
    assert metadata(retried, "skill_dataset")["item_count"] == 50
    assert len(resources["dataset_store"].read_pool(SQL)) == 50


def test_adopting_a_dataset_with_promoted_items_asks_only_for_the_displaced_slots(resources):
    with dg.instance_for_test() as first_instance:
        tick(first_instance, resources, cursor=None)
        first = materialize_skill(first_instance, resources, SQL)
        assert metadata(first, "skill_dataset")["real_world_count"] == 5
    # A dataset written before the pool existed: the store holds the dataset but no pool.
    with closing(resources["dataset_store"].connect()) as conn, conn:
        conn.execute("delete from scenario_pool")
    items = resources["dataset_store"].read_items(dataset_name(SQL))
    displaced = {d: 5 - sum(1 for i in items if i.source == "synthetic" and i.difficulty == d) for d in range(1, 11)}
    displaced = {d: n for d, n in displaced.items() if n}

    asked: list = []

    class Recording(OfflineLLM):
        def write_scenarios(self, request):
            asked.append((request.difficulty, request.count, len(request.avoid)))
            return super().write_scenarios(request)

    with dg.instance_for_test() as fresh:
        tick(fresh, resources, cursor=None)
        result = materialize_skill(fresh, {**resources, "llm": Recording()}, SQL, run_config=NO_PROMOTION)
    assert sorted(asked) == sorted((d, n, 5 - n) for d, n in displaced.items())
    scenarios = metadata(result, "synthetic_scenarios")
    assert scenarios["source"] == "completed" and scenarios["scenarios_generated"] == 5
    assert scenarios["scenarios"] == 50
    meta = metadata(result, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"]) == (0, 0, 0)


def test_changed_description_is_noticed_and_regenerates_in_place(instance, resources):
    first = tick(instance, resources, cursor=None)
    assert materialize_skill(instance, resources, SQL, run_config=NO_PROMOTION).success
    store = resources["skill_store"]
    skill = store.get_skill(SQL)
    store.upsert_skill(skill.model_copy(update={"description": "Advanced SQL: recursive CTEs, lateral joins, partitioning"}))

    second = tick(instance, resources, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == [SQL]
    assert second.run_requests[0].tags["skill_pipeline/reason"] == "name or description changed"
    assert second.run_requests[0].run_key not in {r.run_key for r in first.run_requests}

    result = materialize_skill(instance, resources, SQL, run_config=NO_PROMOTION)
    assert metadata(result, "synthetic_scenarios")["source"] == "generated"
    meta = metadata(result, "skill_dataset")
    assert (meta["item_count"], meta["items_inserted"], meta["items_deleted"]) == (50, 0, 0)
    assert meta["items_updated"] == 50
    items = resources["dataset_store"].read_items(dataset_name(SQL))
    assert all("recursive CTEs" in i.input["skill_description"] for i in items)


def test_deactivated_skill_gets_no_run_and_reactivation_gets_a_new_run_key(instance, resources):
    first = tick(instance, resources, cursor=None)
    store = resources["skill_store"]
    skill = store.get_skill(SQL)
    store.upsert_skill(skill.model_copy(update={"active": False}))
    off = tick(instance, resources, cursor=first.cursor)
    assert off.run_requests == []
    store.upsert_skill(skill)
    on = tick(instance, resources, cursor=off.cursor)
    assert [r.partition_key for r in on.run_requests] == [SQL]
    assert on.run_requests[0].run_key not in {r.run_key for r in first.run_requests}


def test_offline_scenarios_never_go_to_a_remote_store(instance, tmp_path, resources):
    class RemoteLookingStore(LocalDatasetStore):
        @property
        def is_remote(self) -> bool:
            return True

        @property
        def backend(self) -> str:
            return "Opik"

    remote = {**resources, "dataset_store": RemoteLookingStore(path=str(tmp_path / "remote.sqlite"))}
    tick(instance, remote, cursor=None)
    with pytest.raises(dg.Failure, match="offline writer into Opik; set ANTHROPIC_API_KEY"):
        materialize_skill(instance, remote, SQL)
    assert remote["dataset_store"].read_items(dataset_name(SQL)) == []
