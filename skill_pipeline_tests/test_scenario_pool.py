"""The durable scenario pool and adoption of the old backend's datasets, through the real ``opik`` SDK.

The pool is the system of record of every synthetic scenario paid for: a rerun, a promotion run and
a run on a fresh Dagster instance read it from the dataset store (here the Opik fake), never from a
run's stored output. A dataset seeded in the old backend's shape (random UUIDv7 ids, Opik item
``source: "sdk"``, no fingerprint nor our metadata) is adopted as it is stored.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timezone

import dagster as dg

from skill_pipeline.core.scenario_pool import pool_dataset_name
from skill_pipeline.models import Skill, dataset_name
from skill_pipeline_tests.builders import opik_store, synthetic_pool
from skill_pipeline_tests.dagster_helpers import ALL_ASSETS, check_results, metadata, tick
from skill_pipeline_tests.fakes.opik_server import OPIK_TEST_API_KEY, OPIK_TEST_WORKSPACE, FakeOpik
from skill_pipeline_tests.test_production_backends import (  # noqa: F401 - the fixture is used by name
    PROJECT,
    PROMOTION,
    SQL,
    Backends,
    assert_balanced,
    backends,
    config,
    tuned,
)

SKILL = Skill(
    id="skill-7",
    name="Payroll reconciliation",
    description="Matching payroll ledgers against bank exports",
    created_at=datetime(2024, 3, 1, tzinfo=timezone.utc),
)


def test_the_opik_pool_is_a_companion_dataset_with_deterministic_uuid7_ids(opik_fake: FakeOpik) -> None:
    store = opik_store(opik_fake)
    pool = synthetic_pool(SKILL, scenario="Batch {difficulty}-{slot} reconciled against the bank export")
    assert store.read_pool(SKILL.id) == []
    store.write_pool(SKILL, pool[:5])
    store.write_pool(SKILL, pool)  # the first five again: replaced by id, not duplicated
    assert store.read_pool(SKILL.id) == sorted(pool, key=lambda r: (r.difficulty, r.slot))
    rows = opik_fake.items(pool_dataset_name(SKILL.id), PROJECT)
    assert len(rows) == 50 and all(uuid.UUID(r["id"]).version == 7 for r in rows)
    assert dataset_name(SKILL.id) not in opik_fake.dataset_names()  # the evaluation dataset is untouched
    described = [d for d in opik_fake.requests_for("create_dataset")]
    assert described and "not an evaluation dataset" in str(described[-1].body).lower()
    # Deterministic: another store instance writing the same rows changes nothing.
    opik_store(opik_fake).write_pool(SKILL, pool)
    assert {r["id"] for r in opik_fake.items(pool_dataset_name(SKILL.id), PROJECT)} == {r["id"] for r in rows}


def test_a_full_rerun_of_a_skill_with_promoted_items_makes_no_llm_call(backends: Backends) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    first = setup.materialize(SQL)
    assert first.success and metadata(first, "skill_dataset")["real_world_count"] > 0
    assert len(setup.opik.items(pool_dataset_name(SQL), PROJECT)) == 50  # displaced ones kept too
    calls, stored = setup.anthropic.calls, setup.fingerprint(SQL)

    with dg.instance_for_test() as fresh:  # another machine: no stored outputs, the same Opik
        tick(fresh, setup.resources, cursor=None)
        for selection in (None, PROMOTION):
            run = dg.materialize(
                ALL_ASSETS,
                instance=fresh,
                partition_key=SQL,
                resources=setup.resources,
                selection=selection,
                run_config=config(max_promotions=0),
            )
            assert run.success and all(check_results(run).values())
            meta = metadata(run, "skill_dataset")
            assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"]) == (0, 0, 0)
    assert setup.anthropic.calls == calls
    assert setup.fingerprint(SQL) == stored


def seed_old_shape_dataset(fake: FakeOpik, skill_id: str) -> None:
    """50 items as the seed's backend wrote them: the SDK's random ids, ``source: sdk``, its metadata."""
    import opik

    client = opik.Opik(project_name=PROJECT, workspace=OPIK_TEST_WORKSPACE, host=fake.url, api_key=OPIK_TEST_API_KEY)
    dataset = client.create_dataset(dataset_name(skill_id), description="Challenge scenarios", project_name=PROJECT)
    items = []
    for difficulty in range(1, 11):
        for n in range(5):
            concepts = [f"joins {difficulty}", f"filtering case {n}"]
            items.append(
                {
                    "input": {
                        "skill_id": skill_id,
                        "skill_name": "SQL Querying",
                        "skill_description": "Writing SQL queries",
                        "difficulty": difficulty,
                        "scenario": f"An analyst writes query {n} for a level-{difficulty} reporting need",
                        "expected_concepts": concepts,
                    },
                    "expected_output": {
                        "difficulty_range": [max(1, difficulty - 1), min(10, difficulty + 1)],
                        "required_concepts": concepts,
                        "question_characteristics": {
                            "min_length": 10, "max_length": 500, "must_have_explanation": True, "option_count": 4,
                        },
                    },
                    "metadata": {
                        "source": "synthetic",
                        "item_id": f"{skill_id}_d{difficulty}_{1700000000000 + difficulty * 10 + n}",
                        "created_at": "2025-01-15T10:00:00.000Z",
                    },
                }
            )
    dataset.insert(items)


def test_an_old_shape_dataset_is_adopted_as_stored_and_later_runs_succeed(backends: Backends) -> None:
    setup = backends
    seed_old_shape_dataset(setup.opik, SQL)
    rows = setup.items(SQL)
    assert len(rows) == 50 and Counter(r.get("source") for r in rows) == {"sdk": 50}
    before, versions = setup.fingerprint(SQL), len(setup.opik.versions(dataset_name(SQL), PROJECT))
    calls = setup.anthropic.calls

    tick(setup.instance, setup.resources, cursor=None)
    adopted = setup.materialize(SQL, run_config=config(max_promotions=0))
    assert adopted.success, adopted.get_step_failure_events()
    scenarios = metadata(adopted, "synthetic_scenarios")
    assert scenarios["llm_calls"] == 0 and scenarios["source"] == "adopted"
    assert "kept as stored" in scenarios["adoption"]
    meta = metadata(adopted, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"], meta["items_unchanged"]) == (0, 0, 0, 50)
    assert setup.fingerprint(SQL) == before  # ids and content kept
    assert len(setup.opik.versions(dataset_name(SQL), PROJECT)) == versions  # no version written
    assert setup.anthropic.calls == calls

    # The next three runs succeed; promotions displace adopted items one by one, never 100 at once.
    for run_config in (config(), config(), config(max_promotions=0)):
        run = setup.materialize(SQL, run_config=run_config)
        assert run.success and all(check_results(run).values())
        assert metadata(run, "synthetic_scenarios")["llm_calls"] == 0
        meta = metadata(run, "skill_dataset")
        assert meta["items_updated"] == 0 and meta["items_inserted"] == meta["items_deleted"] <= 5
        assert_balanced(setup, SQL)
    kept = set(setup.fingerprint(SQL)) & set(before)
    assert len(kept) == 50 - sum(1 for r in setup.items(SQL) if r["data"]["metadata"]["source"] == "real_world")
    assert max(v["items_total"] for v in setup.opik.versions(dataset_name(SQL), PROJECT)) <= 55
    assert setup.anthropic.calls == calls


def test_generate_scenarios_hands_over_each_difficulty_and_keeps_what_was_paid_for_on_failure() -> None:
    from skill_pipeline.core.scenario_writing import ScenarioGenerationError, generate_scenarios
    from skill_pipeline.resources.llm_offline import OfflineLLM

    offline = OfflineLLM()
    done: dict[int, list] = {}
    started: set[int] = set()
    all_started = threading.Event()

    def write(request):
        started.add(request.difficulty)
        if len(started) == 10:
            all_started.set()
        if request.difficulty == 4:
            # Fail once every call is in flight: what has not started is cancelled (by design), and
            # this test is about what was already paid for, not about thread start-up order.
            all_started.wait(timeout=10)
            raise RuntimeError("outage")
        return offline.write_scenarios(request)

    def generate(writer):
        return generate_scenarios(
            writer, [SKILL], generator="offline", model="m", service="offline", max_concurrency=10, max_attempts=1,
            on_difficulty_done=lambda skill_id, d, rows: done.setdefault(d, []).extend(rows),
        )

    try:
        generate(write)
    except ScenarioGenerationError as exc:
        assert "skill-7 difficulty 4" in str(exc)
    else:
        raise AssertionError("the failure was swallowed")
    assert sorted(done) == [d for d in range(1, 11) if d != 4]
    assert all(len(rows) == 5 and {r.slot for r in rows} == {1, 2, 3, 4, 5} for rows in done.values())
    assert all(r.skill_fingerprint == SKILL.fingerprint for rows in done.values() for r in rows)


def test_a_retried_run_after_a_failure_at_one_difficulty_pays_only_for_it(backends: Backends) -> None:
    setup = backends
    # All ten difficulties in flight at once, so every one but 7 is answered and pooled; under the
    # default bound of 8 a difficulty not yet started when 7 fails is cancelled (a failing run stops
    # asking), and which one that is depends on timing.
    setup.resources["llm"] = tuned(setup.resources["llm"], max_concurrency=10)
    tick(setup.instance, setup.resources, cursor=None)
    setup.anthropic.inject("400", times=None, difficulty=7)  # not retried: fails the run for good
    failed = setup.materialize(SQL, run_config=config(max_promotions=0))
    assert not failed.success
    assert [e.step_key for e in failed.get_step_failure_events()] == ["synthetic_scenarios"]
    pooled = setup.opik.items(pool_dataset_name(SQL), PROJECT)
    assert sorted({r["data"]["input"]["difficulty"] for r in pooled}) == [d for d in range(1, 11) if d != 7]
    assert len(pooled) == 45 and dataset_name(SQL) not in setup.opik.dataset_names()

    setup.anthropic.clear_faults()
    paid = setup.anthropic.calls
    with dg.instance_for_test() as fresh:  # the retry may run anywhere: the pool is in Opik
        tick(fresh, setup.resources, cursor=None)
        retried = dg.materialize(
            ALL_ASSETS, instance=fresh, partition_key=SQL, resources=setup.resources, run_config=config(max_promotions=0)
        )
    assert retried.success and all(check_results(retried).values())
    new = setup.anthropic.requests[paid:]
    assert len(new) == 1 and new[0].ask is not None and new[0].ask.difficulty == 7
    assert metadata(retried, "synthetic_scenarios")["llm_calls"] == 1
    assert_balanced(setup, SQL)


def test_a_frame_with_missing_fingerprints_reads_back_as_none_not_nan() -> None:
    import math

    import pandas as pd

    from skill_pipeline.assets.generation import frame_to_scenarios, scenarios_frame

    rows = [r.model_copy(update={"skill_fingerprint": None}) for r in synthetic_pool(SKILL)]
    frame = scenarios_frame(rows)
    frame["skill_fingerprint"] = math.nan  # what an all-missing column becomes after a round trip
    assert isinstance(frame, pd.DataFrame)
    assert [r.skill_fingerprint for r in frame_to_scenarios(frame)] == [None] * len(rows)


def test_a_promotion_run_on_a_dataset_from_before_the_pool_adopts_it(tmp_path) -> None:
    from contextlib import closing

    from skill_pipeline.demo.seed import demo_skill_id
    from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill

    skill_id = demo_skill_id("SQL Querying")
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as first:
        tick(first, resources, cursor=None)
        assert materialize_skill(first, resources, skill_id, run_config=config(max_promotions=0)).success
    with closing(resources["dataset_store"].connect()) as conn, conn:
        conn.execute("delete from scenario_pool")
    with dg.instance_for_test() as fresh:
        tick(fresh, resources, cursor=None)
        run = materialize_skill(fresh, resources, skill_id, selection=PROMOTION, run_config=config(max_promotions=0))
    assert run.success
    meta = metadata(run, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"]) == (0, 0, 0)
    assert len(resources["dataset_store"].read_pool(skill_id)) == 50
