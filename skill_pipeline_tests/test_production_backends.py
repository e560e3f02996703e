"""The whole pipeline on the production resources, through the real SDKs, against the loopback fakes.

Resources come from ``skill_pipeline.definitions.build_resources`` with the production variables
set (Supabase -> the PostgREST fake, Opik -> the Opik fake, Anthropic -> the Messages fake), so the
``EnvVar`` wiring is what runs. The app data is the demo data (skills, challenges, answers in
PostgREST; the judge's scores as Opik traces with ``metadata.challenge_id`` and a
``judge_composite`` feedback score).

Faults, as the issue puts it: every injected fault either recovers through retries or fails the
run with an error that names the service and the skill; no dataset is ever left with fewer items
than before, or with a duplicate; and no API key or user id appears in logs, metadata or items.
The last part is checked after every test by scanning the captured logs and output, every event
of every run (messages, errors, materialisation and check metadata) and every item in Opik.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from skill_pipeline.definitions import build_resources
from skill_pipeline.demo.seed import DEMO_SKILLS, build_demo_data, demo_skill_id
from skill_pipeline.models import DATASET_SIZE, DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, DatasetItem, dataset_name
from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore
from skill_pipeline.resources.llm_anthropic import AnthropicLLM
from skill_pipeline.resources.skill_store_supabase import SupabaseSkillStore
from skill_pipeline_tests.dagster_helpers import check_results, materialize_skill, metadata, tick
from skill_pipeline_tests.fakes.anthropic_server import AnthropicFake
from skill_pipeline_tests.fakes.opik_server import (
    OPIK_TEST_API_KEY,
    FakeOpik,
    fast_sdk_retries,
)
from skill_pipeline_tests.fakes.postgrest_server import PostgrestFake

PROJECT = "skill-pipeline"
ACTIVE = sorted(demo_skill_id(name) for name, _, active in DEMO_SKILLS if active)
SQL = demo_skill_id("SQL Querying")
GIT = demo_skill_id("Git Version Control")
PYTHON = demo_skill_id("Python Fundamentals")
PROMOTION = dg.AssetSelection.assets("gold_standard_candidates", "skill_dataset")
USER_ID = re.compile(r"user-\d{4}")


def config(max_promotions: int | None = None, force_regenerate: bool = False) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if max_promotions is not None:
        ops["skill_dataset"] = {"config": {"max_promotions": max_promotions}}
    if force_regenerate:
        ops["synthetic_scenarios"] = {"config": {"force_regenerate": True}}
    return {"ops": ops}


# ------------------------------------------------------------------------------------ set-up
def load_demo_app(fake: PostgrestFake) -> None:
    """The demo skills, challenges and answers as the app's Supabase tables hold them."""
    data = build_demo_data()
    fake.load(
        "skills",
        [
            {"id": s[0], "name": s[1], "description": s[2], "active": bool(s[3]), "created_at": s[4]}
            for s in data.skills
        ],
    )
    fake.load(
        "challenges",
        [
            {
                "id": c[0], "skill_id": c[1], "difficulty": c[2], "question": c[3],
                "options_json": json.loads(c[4]),  # a JSON string in the demo tuples, a jsonb list in Postgres
                "correct_option": c[5], "explanation": c[6], "created_at": c[7],
            }
            for c in data.challenges
        ],
    )
    fake.load(
        "answers",
        [
            {
                "id": a[0], "challenge_id": a[1], "user_id": a[2], "is_correct": bool(a[3]),
                "response_time": a[4], "confidence": a[5], "created_at": a[6],
            }
            for a in data.answers
        ],
    )


def load_judge_traces(fake: FakeOpik) -> None:
    """The app's LLM judge: one trace per judged demo challenge, scored ``judge_composite``."""
    for challenge_id, score in build_demo_data().judge_scores.items():
        fake.add_trace(PROJECT, {"challenge_id": challenge_id}, {"judge_composite": score})


def tuned(resource: dg.ConfigurableResource, **overrides: Any) -> dg.ConfigurableResource:
    """The same resource (its ``EnvVar`` fields kept) with test-sized waits."""
    fields = {name: getattr(resource, name) for name in type(resource).model_fields}
    return type(resource)(**{**fields, **overrides})


@dataclass
class Backends:
    postgrest: PostgrestFake
    opik: FakeOpik
    anthropic: AnthropicFake
    resources: dict[str, dg.ConfigurableResource]
    instance: dg.DagsterInstance

    @property
    def secrets(self) -> dict[str, str]:
        return {"Supabase key": self.postgrest.key, "Opik key": OPIK_TEST_API_KEY, "Anthropic key": self.anthropic.api_key}

    def materialize(self, skill_id: str, selection: Any = None, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        """``dagster_helpers.materialize_skill``, but a failed run is returned, not raised: its events are inspected."""
        return materialize_skill(self.instance, self.resources, skill_id, selection, run_config, raise_on_error=False)

    def items(self, skill_id: str) -> list[dict[str, Any]]:
        return self.opik.items(dataset_name(skill_id), PROJECT)

    def fingerprint(self, skill_id: str) -> dict[str, str]:
        """``{id: content hash}`` of what Opik holds, read from the fake's state; fails on a duplicate id."""
        rows = self.items(skill_id)
        assert len({row["id"] for row in rows}) == len(rows), f"duplicate item ids in {dataset_name(skill_id)}"
        return {row["id"]: DatasetItem(id=row["id"], **row["data"]).content_hash for row in rows}


@pytest.fixture
def backends(
    monkeypatch: pytest.MonkeyPatch,
    postgrest_fake: PostgrestFake,
    opik_fake: FakeOpik,
    anthropic_fake: AnthropicFake,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Backends]:
    caplog.set_level(logging.DEBUG)
    fast_sdk_retries(monkeypatch)
    load_demo_app(postgrest_fake)
    load_judge_traces(opik_fake)
    # opik_fake has set OPIK_URL_OVERRIDE, OPIK_API_KEY, OPIK_WORKSPACE and OPIK_PROJECT_NAME.
    monkeypatch.setenv("SUPABASE_URL", postgrest_fake.url)
    monkeypatch.setenv("SUPABASE_KEY", postgrest_fake.key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_fake.api_key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_fake.url)
    built = build_resources(dict(os.environ))
    assert isinstance(built["skill_store"], SupabaseSkillStore)
    assert isinstance(built["dataset_store"], OpikDatasetStore)
    assert isinstance(built["llm"], AnthropicLLM)
    resources = {
        "skill_store": tuned(built["skill_store"], retry_backoff_seconds=0.01, timeout_seconds=5),
        "dataset_store": tuned(built["dataset_store"], retry_backoff_seconds=0.01, write_timeout_seconds=20),
        "llm": built["llm"],
        "promotion_policy": built["promotion_policy"],
    }
    with dg.instance_for_test() as instance:
        setup = Backends(postgrest_fake, opik_fake, anthropic_fake, resources, instance)
        yield setup
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        records = caplog.get_records("setup") + caplog.get_records("call")  # caplog.text is this phase's only
        logged = "\n".join(formatter.format(record) for record in records)
        assert logged, "nothing was logged: the scan would prove nothing"
        scan_for_secrets(setup, logged + "\n" + "\n".join(capfd.readouterr()))


def scan_for_secrets(setup: Backends, captured: str) -> None:
    """No key and no user id in the logs, the output, any event of any run, or any item in Opik."""
    places: dict[str, str] = {"captured logs and output": captured}
    for run in setup.instance.get_runs():
        places[f"event log of run {run.run_id}"] = "\n".join(
            dg.serialize_value(entry) for entry in setup.instance.all_logs(run.run_id)
        )
        places[f"run record {run.run_id}"] = dg.serialize_value(run)
    for name in setup.opik.dataset_names():
        places[f"items of {name}"] = json.dumps(setup.opik.items(name))
    places["experiments and traces in Opik"] = json.dumps([setup.opik.experiments(), setup.opik.traces()])
    for where, text in places.items():
        for what, secret in setup.secrets.items():
            assert secret not in text, f"{what} found in {where}"
        found = USER_ID.search(text)
        assert found is None, f"user id {found.group(0)} found in {where}"


def step_error(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error, with the exception under Dagster's wrapper."""
    failures = result.get_step_failure_events()
    assert failures, "no step failed"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def assert_balanced(setup: Backends, skill_id: str) -> Counter:
    rows = setup.items(skill_id)
    setup.fingerprint(skill_id)  # no duplicate ids
    assert len(rows) == DATASET_SIZE
    assert Counter(row["data"]["input"]["difficulty"] for row in rows) == {
        d: SCENARIOS_PER_DIFFICULTY for d in DIFFICULTY_LEVELS
    }
    return Counter(row["data"]["metadata"]["source"] for row in rows)


def eligible_in_demo_data(challenge_id: str) -> bool:
    """Independent of the pipeline's code: a judged score >= 0.7 and at least 3 answers, most correct."""
    data = build_demo_data()
    answers = [a for a in data.answers if a[1] == challenge_id]
    score = data.judge_scores.get(challenge_id)
    return score is not None and score >= 0.7 and len(answers) >= 3 and sum(a[3] for a in answers) / len(answers) >= 0.5


# ------------------------------------------------------------------------------------ the pipeline
def test_the_pipeline_runs_on_the_production_backends(backends: Backends) -> None:
    setup = backends
    first_tick = tick(setup.instance, setup.resources, cursor=None)
    assert sorted(setup.instance.get_dynamic_partitions("skills")) == ACTIVE
    assert sorted(r.partition_key for r in first_tick.run_requests) == ACTIVE
    assert setup.postgrest.requests_for("skills")  # the skill list came from Supabase

    for skill_id in (SQL, GIT):
        result = setup.materialize(skill_id)
        assert result.success
        checks = check_results(result)
        assert len(checks) == 7 and all(checks.values()), checks
        sources = assert_balanced(setup, skill_id)
        assert sources["real_world"] == metadata(result, "skill_dataset")["real_world_count"] > 0
        assert metadata(result, "synthetic_scenarios")["generators"] == "anthropic: 50"

        # The judge scores were read from Opik traces in a few batched searches, not one per challenge.
        candidates = metadata(result, "gold_standard_candidates")
        skill_challenges = [c[0] for c in build_demo_data().challenges if c[1] == skill_id]
        judged = [cid for cid in skill_challenges if cid in build_demo_data().judge_scores]
        assert candidates["challenges_read"] == len(skill_challenges) == 50
        assert candidates["judge_scores_found"] == len(judged)
        frame = result.output_for_node("gold_standard_candidates")
        by_id = frame.set_index("challenge_id")["judge_composite_score"]
        assert all(by_id[cid] == pytest.approx(build_demo_data().judge_scores[cid]) for cid in judged)
        assert 0 < len(setup.opik.requests_for("search_traces")) < len(skill_challenges)

        # Real-world items are eligible ones, checked against the raw demo data.
        promoted = [r["data"]["metadata"]["challenge_id"] for r in setup.items(skill_id)
                    if r["data"]["metadata"]["source"] == "real_world"]
        assert promoted and all(eligible_in_demo_data(cid) for cid in promoted)
        assert set(promoted) <= set(frame.loc[frame["eligible"], "challenge_id"])

    # A promotion run (the promotion job's selection): a few more real-world items, still 50, balanced.
    before = assert_balanced(setup, SQL)
    promotion = setup.materialize(SQL, selection=PROMOTION)
    assert promotion.success and all(check_results(promotion).values())
    meta = metadata(promotion, "skill_dataset")
    after = assert_balanced(setup, SQL)
    assert after["real_world"] == before["real_world"] + meta["newly_promoted"]
    assert meta["items_inserted"] == meta["items_deleted"] == meta["newly_promoted"] > 0
    promoted = [r["data"]["metadata"]["challenge_id"] for r in setup.items(SQL) if r["data"]["metadata"]["source"] == "real_world"]
    assert all(eligible_in_demo_data(cid) for cid in promoted)

    # A rerun that promotes nothing new writes nothing (and calls no LLM).
    calls, stored = setup.anthropic.calls, setup.fingerprint(SQL)
    writes = len(setup.opik.requests_for("write_items")) + len(setup.opik.requests_for("delete_items"))
    rerun = setup.materialize(SQL, selection=PROMOTION, run_config=config(max_promotions=0))
    assert rerun.success and all(check_results(rerun).values())
    meta = metadata(rerun, "skill_dataset")
    assert (meta["items_inserted"], meta["items_updated"], meta["items_deleted"], meta["items_unchanged"]) == (0, 0, 0, 50)
    assert len(setup.opik.requests_for("write_items")) + len(setup.opik.requests_for("delete_items")) == writes
    assert setup.anthropic.calls == calls and setup.fingerprint(SQL) == stored


# ------------------------------------------------------------------------------------ faults
def test_anthropic_overloaded_recovers_through_retries(backends: Backends) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    setup.anthropic.inject("529", times=3)
    result = setup.materialize(PYTHON)
    assert result.success and all(check_results(result).values())
    statuses = Counter(r.status for r in setup.anthropic.requests)
    assert statuses[529] == 3 and statuses[200] == 10
    assert_balanced(setup, PYTHON)


def test_anthropic_timing_out_for_good_fails_naming_anthropic_and_the_skill_and_keeps_the_dataset(
    backends: Backends,
) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    assert setup.materialize(GIT, run_config=config(max_promotions=0)).success
    before, versions = setup.fingerprint(GIT), len(setup.opik.versions(dataset_name(GIT), PROJECT))

    setup.resources["llm"] = tuned(setup.resources["llm"], timeout_seconds=0.3, max_retries=1)
    setup.anthropic.inject("timeout", times=None, sleep_seconds=3)
    failed = setup.materialize(GIT, run_config=config(max_promotions=0, force_regenerate=True))
    assert not failed.success
    error = step_error(failed)
    assert "Anthropic" in error and GIT in error
    assert [e.step_key for e in failed.get_step_failure_events()] == ["synthetic_scenarios"]
    assert all(r.fault == "timeout" for r in setup.anthropic.requests[10:])
    assert setup.fingerprint(GIT) == before
    assert len(setup.opik.versions(dataset_name(GIT), PROJECT)) == versions


def test_supabase_answering_500_fails_naming_supabase_and_the_skill(backends: Backends) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    setup.postgrest.inject("status_500", table="challenges")
    failed = setup.materialize(SQL)
    assert not failed.success
    error = step_error(failed)
    assert "Supabase" in error and SQL in error and "challenges" in error
    assert [e.step_key for e in failed.get_step_failure_events()] == ["gold_standard_candidates"]
    assert [r.status for r in setup.postgrest.requests_for("challenges")] == [500]  # a 500 is not retried
    assert dataset_name(SQL) not in setup.opik.dataset_names()  # skill_dataset never ran


def test_supabase_unavailable_for_a_moment_recovers_through_retries(backends: Backends) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    setup.postgrest.inject("status_503", table="answers", times=2)
    result = setup.materialize(SQL)
    assert result.success and all(check_results(result).values())
    statuses = [r.status for r in setup.postgrest.requests_for("answers")]
    # The answers are read as concurrent keyset reads (answer_streams): two of them met the 503s.
    assert statuses.count(503) == 2 and set(statuses) <= {503, 200, 206}  # 206: the first of several pages
    assert metadata(result, "gold_standard_candidates")["answers_read"] == sum(
        1 for a in build_demo_data().answers if a[1] in {c[0] for c in build_demo_data().challenges if c[1] == SQL}
    )
    assert_balanced(setup, SQL)


def test_opik_judge_search_failing_for_good_fails_naming_opik(backends: Backends) -> None:
    """The error names the skill, Opik and the challenge whose traces could not be searched."""
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    setup.opik.inject("search_traces", status=500, times=10_000)
    failed = setup.materialize(SQL)
    assert not failed.success
    error = step_error(failed)
    assert f"skill {SQL}: reading judge scores from Opik failed" in error
    assert "Opik: searching the judged traces of project" in error and "HTTP 500" in error
    assert failed.dagster_run.tags["dagster/partition"] == SQL
    assert [e.step_key for e in failed.get_step_failure_events()] == ["gold_standard_candidates"]
    assert dataset_name(SQL) not in setup.opik.dataset_names()  # no candidate is assumed eligible, nothing written


def test_opik_failing_a_write_for_good_fails_naming_opik_and_leaves_the_dataset_whole(backends: Backends) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    assert setup.materialize(SQL, run_config=config(max_promotions=2)).success
    before, sources = setup.fingerprint(SQL), assert_balanced(setup, SQL)

    setup.opik.inject("write_items", status=500, times=1000)
    failed = setup.materialize(SQL, selection=PROMOTION)
    assert not failed.success
    error = step_error(failed)
    assert "Opik" in error and dataset_name(SQL) in error and "HTTP 500" in error
    assert [e.step_key for e in failed.get_step_failure_events()] == ["skill_dataset"]
    assert setup.opik.requests_for("delete_items") == []  # insert before delete: nothing was displaced
    assert setup.fingerprint(SQL) == before
    setup.opik.clear_faults()

    # The next run completes the promotion from where the store really is.
    retried = setup.materialize(SQL, selection=PROMOTION)
    assert retried.success and all(check_results(retried).values())
    assert assert_balanced(setup, SQL)["real_world"] == sources["real_world"] + metadata(retried, "skill_dataset")[
        "newly_promoted"
    ] > sources["real_world"]


@pytest.mark.parametrize("fault", ["status", "drop_after"])
def test_opik_write_faults_recover_without_losing_or_duplicating_items(backends: Backends, fault: str) -> None:
    setup = backends
    tick(setup.instance, setup.resources, cursor=None)
    assert setup.materialize(GIT, run_config=config(max_promotions=1)).success
    before = assert_balanced(setup, GIT)

    setup.opik.inject("write_items", fault, status=500, times=2 if fault == "status" else 1)
    result = setup.materialize(GIT, selection=PROMOTION)
    assert result.success and all(check_results(result).values())
    assert [r.fault for r in setup.opik.requests_for("write_items")][-3 if fault == "status" else -2 :] == (
        [fault, fault, None] if fault == "status" else [fault, None]
    )
    after = assert_balanced(setup, GIT)
    assert after["real_world"] == before["real_world"] + metadata(result, "skill_dataset")["newly_promoted"]
