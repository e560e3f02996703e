"""No skill left behind: the skill sensor re-requests a skill whose latest dataset run failed.

A real instance (``dg.instance_for_test``), the real ``skill_dataset_job`` executed on it, the real
Anthropic SDK against the loopback fake (which answers 400 to one skill's runs so that they fail for
good), and the sensor evaluated with ``build_sensor_context`` between runs, as the daemon would.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import datetime, timezone

import dagster as dg
import pytest

from skill_pipeline.jobs import skill_dataset_job
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.llm_anthropic import AnthropicLLM
from skill_pipeline.resources.promotion_policy import PromotionPolicy
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore, connect
from skill_pipeline.sensors import RETRY_ATTEMPTS_VARIABLE, RETRY_BASE_VARIABLE
from skill_pipeline_tests.dagster_helpers import ALL_ASSETS, tick

SKILLS = {"skill-a": "SQL joins", "skill-b": "Git rebasing", "skill-c": "Kubernetes probes"}


@pytest.fixture
def setup(tmp_path, anthropic_fake):
    with closing(connect(tmp_path / "app.sqlite")) as conn, conn:
        created = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()
        conn.executemany(
            "insert into skills (id, name, description, active, created_at) values (?, ?, ?, 1, ?)",
            [(k, name, f"{name}: concepts, practice and pitfalls", created) for k, name in SKILLS.items()],
        )
    resources = {
        "skill_store": SqliteSkillStore(path=str(tmp_path / "app.sqlite")),
        "dataset_store": LocalDatasetStore(path=str(tmp_path / "datasets.sqlite")),
        "llm": AnthropicLLM(
            api_key=anthropic_fake.api_key, base_url=anthropic_fake.url, max_concurrency=10, timeout_seconds=5.0
        ),
        "promotion_policy": PromotionPolicy(),
    }
    # Resolved under a live instance (an earlier test's schedule context can leave Dagster's defs-state
    # storage pointing at a disposed one: see test_structure.py).
    with dg.instance_for_test() as instance:
        job = dg.Definitions(assets=ALL_ASSETS, jobs=[skill_dataset_job], resources=resources).resolve_job_def(
            skill_dataset_job.name
        )
        yield instance, resources, job, anthropic_fake


def run(instance, job, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=dict(request.tags), raise_on_error=False
    )


def cursor_batches(result: dg.SensorResult) -> dict:
    return json.loads(result.cursor)["batches"]


def said(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_failed_skill_is_re_requested_with_backoff_and_reported(setup, monkeypatch):
    instance, resources, job, fake = setup
    monkeypatch.setenv(RETRY_BASE_VARIABLE, "3600")
    monkeypatch.setenv(RETRY_ATTEMPTS_VARIABLE, "1")

    first = tick(instance, resources, None)
    assert sorted(r.partition_key for r in first.run_requests) == sorted(SKILLS)
    for request in first.run_requests:
        if request.partition_key == "skill-c":
            fake.inject("400", times=None)  # every call of skill-c's run: not retried, the run fails
        result = run(instance, job, request)
        fake.clear_faults()
        assert result.success == (request.partition_key != "skill-c")
    failed_run = result.run_id if request.partition_key == "skill-c" else None
    failed_run = failed_run or next(
        r.run_id for r in instance.get_runs() if r.tags.get("dagster/partition") == "skill-c"
    )

    # Inside the backoff: nothing requested, and the tick says so instead of "none new or changed".
    waiting = tick(instance, resources, first.cursor)
    assert waiting.run_requests == []
    assert "none new or changed" not in said(waiting)
    assert "3 active skills: 2 with a dataset; 1 without" in said(waiting)
    assert "1 failed and waiting for backoff" in said(waiting)

    # Dagster's own run retry still to come: the sensor leaves the skill to it.
    monkeypatch.setenv(RETRY_BASE_VARIABLE, "0")
    instance.add_run_tags(failed_run, {"dagster/will_retry": "true"})
    leave_it = tick(instance, resources, waiting.cursor)
    assert leave_it.run_requests == [] and "1 failed and being retried by Dagster" in said(leave_it)

    # Retries spent (or off): the sensor requests the skill again under a new run key.
    instance.add_run_tags(failed_run, {"dagster/will_retry": "false"})
    retry = tick(instance, resources, leave_it.cursor)
    [request] = retry.run_requests
    assert request.partition_key == "skill-c" and request.run_key.endswith(":retry1")
    assert failed_run in request.tags["skill_pipeline/reason"]

    # Requested, not launched yet: pending, not requested twice.
    again = tick(instance, resources, retry.cursor)
    assert again.run_requests == [] and "1 pending" in said(again)

    # The retry fails too and the attempts are spent: reported as failed on every tick, by name.
    fake.inject("400", times=None)
    assert not run(instance, job, request).success
    fake.clear_faults()
    spent = tick(instance, resources, again.cursor)
    assert spent.run_requests == [] and "1 failed after 1 sensor retries (skill-c)" in said(spent)

    # More attempts allowed: retry 2, which succeeds; then every skill has its dataset.
    monkeypatch.setenv(RETRY_ATTEMPTS_VARIABLE, "3")
    second = tick(instance, resources, spent.cursor)
    [request] = second.run_requests
    assert request.run_key.endswith(":retry2")
    assert run(instance, job, request).success
    done = tick(instance, resources, second.cursor)
    assert done.run_requests == []
    assert said(done) == "3 active skills, every one with a dataset; none new or changed"
    assert resources["dataset_store"].read_items("skill_skill-c_scenarios")


def test_new_skills_in_a_batch_run_a_failing_skill_loses_no_other(setup, monkeypatch):
    """Many new skills go to one new_skills_batch run; one skill's calls fail for good: the others get
    their datasets, materialisations and check results per skill; the failed one is requested again
    at once as a run of its own, and succeeds."""
    from skill_pipeline.batch import new_skills_batch_job

    instance, resources, job, fake = setup
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_MIN_SKILLS", "2")
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_RUNS", "1")
    monkeypatch.setenv(RETRY_BASE_VARIABLE, "3600")
    batch_job = dg.Definitions(
        assets=ALL_ASSETS, jobs=[skill_dataset_job, new_skills_batch_job], resources=resources
    ).resolve_job_def(new_skills_batch_job.name)

    first = tick(instance, resources, None)
    [request] = first.run_requests
    assert request.job_name == "new_skills_batch"
    assert sorted(request.run_config["ops"]["new_skills"]["config"]["skill_ids"]) == sorted(SKILLS)
    pending = tick(instance, resources, first.cursor)
    assert pending.run_requests == [] and "3 pending" in said(pending)

    fake.inject("400", times=None, skill_name="Kubernetes probes")
    result = batch_job.execute_in_process(
        instance=instance, run_config=request.run_config, tags=dict(request.tags), raise_on_error=False
    )
    fake.clear_faults()
    assert not result.success
    store = resources["dataset_store"]
    assert [len(store.read_items(f"skill_{k}_scenarios")) for k in ("skill-a", "skill-b", "skill-c")] == [50, 50, 0]
    # Per skill: its own materialisations (with its own metadata) and its own check results.
    by_asset: dict[str, dict[str, dict]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        by_asset.setdefault(m.asset_key.to_user_string(), {})[m.partition] = {k: v.value for k, v in m.metadata.items()}
    for asset in ("synthetic_scenarios", "gold_standard_candidates", "skill_dataset"):
        assert sorted(by_asset[asset]) == ["skill-a", "skill-b"], asset
    assert by_asset["skill_dataset"]["skill-b"]["skill_name"] == "Git rebasing"
    assert by_asset["skill_dataset"]["skill-a"]["item_count"] == 50
    assert by_asset["synthetic_scenarios"]["skill-a"]["scenarios_generated"] == 50
    checks = [(e.partition, e.check_name, e.passed) for e in result.get_asset_check_evaluations()]
    assert {(p, passed) for p, _, passed in checks} == {("skill-a", True), ("skill-b", True)}
    assert len(checks) == 2 * 7
    assert instance.get_materialized_partitions(dg.AssetKey("skill_dataset")) == {"skill-a", "skill-b"}
    # Nothing paid for was thrown away: one accepted call per difficulty of the two skills.
    assert sum(1 for r in fake.requests if r.status == 200) == 20

    # The failed skill of the batch: requested again at once, on its own (no backoff for a first retry).
    retry = tick(instance, resources, pending.cursor)
    [again] = retry.run_requests
    assert (again.job_name, again.partition_key) == ("skill_dataset_job", "skill-c")
    assert again.run_key.endswith(":retry1") and "batch run" in again.tags["skill_pipeline/reason"]
    assert run(instance, job, again).success
    done = tick(instance, resources, retry.cursor)
    assert said(done) == "3 active skills, every one with a dataset; none new or changed"
    assert [len(store.read_items(f"skill_{k}_scenarios")) for k in SKILLS] == [50, 50, 50]


def test_a_batch_without_failures_succeeds_and_the_next_tick_sees_every_dataset(setup, monkeypatch):
    from skill_pipeline.batch import new_skills_batch_job

    instance, resources, _, fake = setup
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_MIN_SKILLS", "2")
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_RUNS", "2")
    batch_job = dg.Definitions(assets=ALL_ASSETS, jobs=[new_skills_batch_job], resources=resources).resolve_job_def(
        new_skills_batch_job.name
    )
    first = tick(instance, resources, None)
    assert [len(r.run_config["ops"]["new_skills"]["config"]["skill_ids"]) for r in first.run_requests] == [2, 1]
    for request in first.run_requests:
        result = batch_job.execute_in_process(instance=instance, run_config=request.run_config, tags=dict(request.tags))
        assert result.success
    assert fake.calls == 30
    done = tick(instance, resources, first.cursor)
    assert said(done) == "3 active skills, every one with a dataset; none new or changed"
    assert cursor_batches(done) == {}


def test_a_batch_under_a_spend_budget_stops_naming_it_keeps_what_it_paid_and_books_each_call_to_its_skill(
    setup, monkeypatch, tmp_path
):
    from skill_pipeline.batch import new_skills_batch_job
    from skill_pipeline.core.budget import spend_day
    from skill_pipeline.resources.spend_ledger import SqliteSpendLedger

    instance, resources, _, fake = setup
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_MIN_SKILLS", "2")
    monkeypatch.setenv("SKILL_PIPELINE_BATCH_RUNS", "1")
    ledger = tmp_path / "spend.sqlite"
    llm = resources["llm"]
    budgeted = AnthropicLLM(api_key=llm.api_key, base_url=llm.base_url, max_concurrency=10, timeout_seconds=5.0,
                            budget_run_tokens=20_000, spend_ledger_path=str(ledger))
    resources = {**resources, "llm": budgeted}
    batch_job = dg.Definitions(assets=ALL_ASSETS, jobs=[new_skills_batch_job], resources=resources).resolve_job_def(
        new_skills_batch_job.name
    )
    (request,) = tick(instance, resources, None).run_requests
    result = batch_job.execute_in_process(instance=instance, run_config=request.run_config, tags=dict(request.tags),
                                          raise_on_error=False)

    assert not result.success
    failure = result.failure_data_for_node("new_skills").error.message
    assert "spend budget" in failure and "SKILL_PIPELINE_BUDGET_RUN_TOKENS" in failure
    store = resources["dataset_store"]
    pooled = {s: len(store.read_pool(s)) for s in SKILLS}
    assert 0 < fake.calls < 30 and sum(pooled.values()) > 0  # stopped early; what it paid for is pooled
    by_skill = SqliteSpendLedger(ledger).day_spend_by_skill(spend_day(datetime.now(timezone.utc)))
    booked = {skill: spend.calls for skill, spend in by_skill.items()}
    assert set(booked) <= set(SKILLS) and sum(booked.values()) == fake.calls  # each call booked to its skill
