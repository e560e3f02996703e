"""Experiments in Opik: ``OpikDatasetStore.run_experiment`` through the real ``opik.evaluate`` and the
real ``anthropic`` SDK, against the strict loopback fakes of both services.

Two levels: the store on its own (what reaches Opik, what comes back, what fails and how), and the
``prompt_experiment`` asset with its regression check on a real Dagster instance, over a dataset
built by the normal ``skill_dataset`` materialisation against the same fakes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone
from statistics import mean
from typing import Any

import dagster as dg
import pytest
from opik.api_objects import opik_client

from skill_pipeline.assets.evaluation import challenge_task, prompt_experiment
from skill_pipeline.core.challenge_prompt import CURRENT_PROMPT, JUDGE_PROMPT_VERSION, get_prompt
from skill_pipeline.checks import prompt_experiment_regression
from skill_pipeline.core.composition import compose_dataset
from skill_pipeline.core.experiment import summarise_scores
from skill_pipeline.core.generation import SyntheticScenario
from skill_pipeline.core.metrics import METRIC_NAMES
from skill_pipeline.demo.seed import build_demo_data, demo_skill_id
from skill_pipeline.models import Candidate, DatasetItem, Skill, dataset_name
from skill_pipeline.core.experiment import ExperimentRecord
from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore
from skill_pipeline.resources.opik_support import OpikDatasetStoreError
from skill_pipeline.resources.llm_anthropic import AnthropicCallError, AnthropicLLM
from skill_pipeline.resources.promotion_policy import PromotionPolicy
from skill_pipeline_tests.dagster_helpers import check_results, materialize_skill, metadata, seeded_app, tick
from skill_pipeline_tests.builders import candidate as build_candidate, opik_store, synthetic_pool
from skill_pipeline_tests.fakes.anthropic_server import AnthropicFake
from skill_pipeline_tests.fakes.opik_server import (
    OPIK_TEST_API_KEY,
    OPIK_TEST_WORKSPACE,
    FakeOpik,
    fast_sdk_retries,
)

PROJECT = "skill-pipeline"
SKILL = Skill(
    id="skill-77",
    name="SQL Querying",
    description="joins, aggregation with GROUP BY, window functions",
    created_at=datetime(2024, 3, 1, tzinfo=timezone.utc),
)
NAME = dataset_name(SKILL.id)
V1 = get_prompt(CURRENT_PROMPT)
TERSE = get_prompt("v0-terse")
SQL = demo_skill_id("SQL Querying")


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_sdk_retries(monkeypatch)


def make_store(fake: FakeOpik, **overrides: Any) -> OpikDatasetStore:
    return opik_store(fake, PROJECT, **overrides)


def make_llm(fake: AnthropicFake, **overrides: Any) -> AnthropicLLM:
    settings: dict[str, Any] = {"api_key": fake.api_key, "base_url": fake.url, "timeout_seconds": 5.0, "max_retries": 2}
    settings.update(overrides)
    return AnthropicLLM(**settings)


def pool(skill: Skill = SKILL) -> list[SyntheticScenario]:
    return synthetic_pool(skill, generator="anthropic", model="claude-haiku-4-5-20251001")


def candidate(challenge_id: str, difficulty: int) -> Candidate:
    return build_candidate(challenge_id, difficulty, user_confidence=None)


@pytest.fixture
def seeded_store(opik_fake: FakeOpik):
    """A store whose dataset holds 48 synthetic and 2 real-world items."""
    store = make_store(opik_fake)
    composition = compose_dataset(SKILL, pool(), [candidate("ch-a", 3), candidate("ch-b", 8)], [])
    store.sync(NAME, "scenarios", composition)
    yield store
    store.close()


def experiment_scores(fake: FakeOpik, experiment: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{dataset item id: {metric: value}}`` as the fake recorded them: experiment item -> trace -> scores."""
    out: dict[str, dict[str, float]] = {}
    for link in experiment["items"]:
        trace = fake.trace(link["trace_id"])
        assert trace is not None, f"experiment item {link['id']} points at trace {link['trace_id']}, never received"
        out[link["dataset_item_id"]] = {s["name"]: s["value"] for s in trace["feedback_scores"]}
    return out


def run(store: OpikDatasetStore, llm: AnthropicLLM, items: list[DatasetItem], prompt=V1, **config: Any) -> ExperimentRecord:
    return store.run_experiment(
        NAME,
        items,
        challenge_task(llm, prompt, SKILL),
        experiment_name=f"{NAME}-{prompt.label}",
        experiment_config={"prompt_version": prompt.label, "model": llm.model_name, **config},
        threads=4,
    )


# ------------------------------------------------------------------------------------ the store
def test_an_experiment_runs_through_opik_evaluate_and_is_recorded_in_opik(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A default global client would read these: it must not be the one evaluate uses.
    decoy = FakeOpik().start()
    monkeypatch.setenv("OPIK_URL_OVERRIDE", decoy.url)
    monkeypatch.setenv("OPIK_API_KEY", "decoy-key")
    try:
        items = seeded_store.read_items(NAME)
        version = opik_fake.versions(NAME)[0]
        record = run(seeded_store, make_llm(anthropic_fake), items, dataset_version="v1")
    finally:
        decoy.stop()
    assert decoy.requests == []
    assert opik_client.get_current_client_raw() is None  # our client was installed for the call only

    # One row per item, in the order the items were read, built from what evaluate scored.
    assert [row.item_id for row in record.rows] == [item.id for item in items]
    by_id = {item.id: item for item in items}
    for row in record.rows:
        item = by_id[row.item_id]
        assert (row.difficulty, row.source) == (item.difficulty, item.source)
        # The Anthropic fake's judge gives a difficulty but no quality ratings: the rated metrics do not
        # apply (absent), DifficultyOnTarget (from the difficulty) does.
        expected = {"OptionCount", "ExplanationPresent", "LengthWithinBounds", "DifficultyAlignment", "AnswerValidity",
                    "DifficultyOnTarget"}
        expected |= {"ValidatedQuestionAgreement"} if item.source == "real_world" else {"ConceptCoverage"}
        assert set(row.scores) == expected  # a metric that does not apply is absent, not 0
    assert sum(row.source == "real_world" for row in record.rows) == 2
    summary = summarise_scores(record.rows)
    assert summary.overall_mean is not None and summary.overall_mean > 0.9

    # The experiment in Opik: linked to the dataset version read, config kept, finished.
    [experiment] = opik_fake.experiments(NAME)
    assert record.experiment_id == experiment["id"] and experiment["id"] in record.location
    assert experiment["name"] == f"{NAME}-{V1.label}" == record.experiment_name
    assert experiment["dataset_version_id"] == version["id"]
    assert {k: experiment["metadata"][k] for k in ("prompt_version", "model", "dataset_version")} == {
        "prompt_version": V1.label,
        "model": "claude-haiku-4-5-20251001",
        "dataset_version": "v1",
    }
    assert experiment["status"] == "completed"
    create = opik_fake.requests_for("create_experiment")[0].body
    assert create["project_name"] == PROJECT and create["dataset_name"] == NAME

    # Every item has a trace in the project and the same scores as the record.
    scored = experiment_scores(opik_fake, experiment)
    assert set(scored) == set(by_id)
    assert scored == {row.item_id: row.scores for row in record.rows}
    traces = {t["id"]: t for t in opik_fake.traces(PROJECT)}
    assert {link["trace_id"] for link in experiment["items"]} <= set(traces)
    assert all(traces[link["trace_id"]]["source"] == "experiment" for link in experiment["items"])

    # Token usage in the rows is what the Anthropic fake billed for the challenges and the judge.
    billed = sum(r.usage["input_tokens"] for r in anthropic_fake.requests)
    assert sum(row.input_tokens for row in record.rows) == billed
    tools = defaultdict(int)
    for request in anthropic_fake.requests:
        tools[request.body["tool_choice"]["name"]] += 1
    assert tools == {"record_challenge": 50, "record_difficulty": 50}
    assert sum(row.llm_calls for row in record.rows) == 100


def test_a_terse_prompt_scores_lower_on_the_same_items(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake
) -> None:
    items = seeded_store.read_items(NAME)
    llm = make_llm(anthropic_fake)
    good = summarise_scores(run(seeded_store, llm, items).rows)
    terse = summarise_scores(run(seeded_store, llm, items, prompt=TERSE).rows)
    assert terse.overall_mean < 0.75 < good.overall_mean  # type: ignore[operator]
    assert terse.metric_means["ExplanationPresent"] == 0.0 and good.metric_means["ExplanationPresent"] == 1.0
    assert [e["metadata"]["prompt_version"] for e in opik_fake.experiments(NAME)] == [V1.label, TERSE.label]


def test_a_dropped_trace_batch_fails_the_experiment_naming_opik_and_the_dataset(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK drops a batch after three 5xx and raises nothing; evaluate's own flush hides it from a
    later flush(): the store counts the drops around the whole evaluation."""
    caplog.set_level(logging.INFO)
    items = seeded_store.read_items(NAME)
    opik_fake.inject("create_traces", status=500, times=1000)
    with pytest.raises(OpikDatasetStoreError) as caught:
        run(seeded_store, make_llm(anthropic_fake), items)
    message = str(caught.value)
    assert "Opik" in message and NAME in message and "CreateTraceBatchMessage (HTTP 500)" in message
    assert "incomplete" in message
    assert opik_fake.traces(PROJECT) == []
    for text in (message, caplog.text):
        assert OPIK_TEST_API_KEY not in text and anthropic_fake.api_key not in text
    opik_fake.clear_faults()

    # Once Opik answers again, the next experiment is whole.
    record = run(seeded_store, make_llm(anthropic_fake), items)
    assert len(experiment_scores(opik_fake, opik_fake.experiments(NAME)[-1])) == len(record.rows) == 50


def test_a_trace_batch_recovering_within_the_sdk_retries_is_not_a_failure(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake
) -> None:
    items = seeded_store.read_items(NAME)
    opik_fake.inject("create_traces", status=503, times=1)
    opik_fake.inject("score_traces", status=500, times=1)
    record = run(seeded_store, make_llm(anthropic_fake), items)
    assert [r.status for r in opik_fake.requests_for("create_traces")][:2] == [503, 204]
    assert experiment_scores(opik_fake, opik_fake.experiments(NAME)[0]) == {r.item_id: r.scores for r in record.rows}


def test_an_experiment_that_opik_refuses_to_create_fails_naming_opik_and_the_dataset(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake
) -> None:
    items = seeded_store.read_items(NAME)
    opik_fake.inject("create_experiment", status=500, times=10)
    with pytest.raises(OpikDatasetStoreError) as caught:
        run(seeded_store, make_llm(anthropic_fake), items)
    message = str(caught.value)
    assert "Opik" in message and NAME in message and "HTTP 500" in message
    assert OPIK_TEST_API_KEY not in message
    assert anthropic_fake.calls == 0  # nothing was paid for an experiment that could not be recorded


def test_a_failing_llm_fails_the_experiment_with_its_own_error(
    seeded_store: OpikDatasetStore, opik_fake: FakeOpik, anthropic_fake: AnthropicFake
) -> None:
    items = seeded_store.read_items(NAME)
    anthropic_fake.inject("500", times=None, tool="record_challenge")
    with pytest.raises(AnthropicCallError) as caught:
        run(seeded_store, make_llm(anthropic_fake, max_retries=0), items)
    assert "Anthropic" in str(caught.value) and "HTTP 500" in str(caught.value)
    assert anthropic_fake.api_key not in str(caught.value)


def test_an_experiment_on_a_missing_dataset_names_opik_and_the_dataset(
    opik_fake: FakeOpik, anthropic_fake: AnthropicFake
) -> None:
    store = make_store(opik_fake)
    try:
        with pytest.raises(OpikDatasetStoreError, match=f"Opik: .*{NAME}.*does not exist"):
            run(store, make_llm(anthropic_fake), [])
    finally:
        store.close()
    assert opik_fake.experiments() == []


def test_the_fake_refuses_what_opik_refuses_for_experiments(opik_fake: FakeOpik) -> None:
    import httpx

    headers = {"Authorization": OPIK_TEST_API_KEY, "Comet-Workspace": OPIK_TEST_WORKSPACE}
    base = opik_fake.url + "/v1/private"
    assert httpx.post(f"{base}/experiments", json={"dataset_name": "nowhere"}, headers=headers).status_code == 400
    trace = {"id": "6f1c0f3e-5b1d-4c39-9a53-2a1d8c0e4b11", "start_time": "2026-01-01T00:00:00Z"}  # version 4
    assert httpx.post(f"{base}/traces/batch", json={"traces": [trace]}, headers=headers).status_code == 400
    score = {"id": "01900000-0000-7000-8000-0000000000aa", "name": "m", "value": 0.5, "source": "robot"}
    assert httpx.put(f"{base}/traces/feedback-scores", json={"scores": [score]}, headers=headers).status_code == 400
    violations = opik_fake.take_violations()
    assert len(violations) == 3
    assert "does not hold" in violations[0] and "version 7" in violations[1] and "'robot'" in violations[2]


# ------------------------------------------------------------------------------------ the asset
def load_judge_traces(fake: FakeOpik, skill_id: str) -> int:
    """The app's judge scores for the skill's demo challenges, as traces with feedback scores."""
    data = build_demo_data()
    ids = [c[0] for c in data.challenges if c[1] == skill_id]
    for cid in ids:
        if cid in data.judge_scores:
            fake.add_trace(PROJECT, {"challenge_id": cid}, {"judge_composite": data.judge_scores[cid]})
    return len(ids)


@pytest.fixture
def pipeline(tmp_path, opik_fake: FakeOpik, anthropic_fake: AnthropicFake):
    """A Dagster instance whose SQL dataset was built by the pipeline itself into the Opik fake."""
    load_judge_traces(opik_fake, SQL)
    resources = {
        "skill_store": seeded_app(tmp_path / "app.sqlite"),
        "dataset_store": make_store(opik_fake),
        "llm": make_llm(anthropic_fake, max_concurrency=8),
        "promotion_policy": PromotionPolicy(),
    }
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        built = materialize_skill(instance, resources, SQL)
        assert built.success and all(check_results(built).values())
        assert metadata(built, "skill_dataset")["real_world_count"] > 0
        yield instance, resources
    resources["dataset_store"].close()


def experiment_run(instance, resources, **config: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [prompt_experiment, prompt_experiment_regression],
        instance=instance,
        partition_key=SQL,
        resources=resources,
        run_config={"ops": {"prompt_experiment": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_the_prompt_experiment_asset_records_its_experiment_in_opik(pipeline, opik_fake: FakeOpik) -> None:
    instance, resources = pipeline
    name = dataset_name(SQL)
    result = experiment_run(instance, resources)
    assert result.success
    meta = metadata(result, "prompt_experiment")
    assert check_results(result) == {"prompt_experiment_regression": True}

    [experiment] = opik_fake.experiments(name)
    assert meta["experiment_id"] == experiment["id"] and experiment["id"] in meta["experiment_location"]
    config = experiment["metadata"]
    assert config["prompt_version"] == meta["baseline_version"] == V1.label and config["role"] == "baseline"
    assert config["model"] == meta["model"] == "claude-haiku-4-5-20251001"
    assert config["dataset_version"] == meta["dataset_version"] == opik_fake.versions(name)[0]["version_name"]
    assert config["judge_prompt_version"] == JUDGE_PROMPT_VERSION and config["generator"] == "anthropic"
    assert config["skill_id"] == SQL

    # Every item of the dataset has a trace with feedback scores.
    stored = {row["id"]: row for row in opik_fake.items(name)}
    scored = experiment_scores(opik_fake, experiment)
    assert set(scored) == set(stored) and len(scored) == 50
    assert all(scores for scores in scored.values())
    real_world = [i for i, row in stored.items() if row["data"]["metadata"]["source"] == "real_world"]
    assert real_world and all("ValidatedQuestionAgreement" in scored[i] for i in real_world)

    # The means in the metadata are the means of what Opik recorded.
    assert meta["items_scored"] == 50
    for metric in METRIC_NAMES:
        values = [scores[metric] for scores in scored.values() if metric in scores]
        if not values:  # the judge ratings the Anthropic fake does not give
            assert f"mean/{metric}" not in meta
            continue
        assert meta[f"mean/{metric}"] == pytest.approx(round(mean(values), 4))
    item_means = [mean(scores.values()) for scores in scored.values()]
    assert meta["mean"] == pytest.approx(round(mean(item_means), 4))
    assert meta["source/real_world"] == pytest.approx(round(mean(mean(scored[i].values()) for i in real_world), 4))


def test_the_candidate_prompt_is_compared_on_the_same_opik_dataset(pipeline, opik_fake: FakeOpik) -> None:
    instance, resources = pipeline
    result = experiment_run(instance, resources, candidate_version="v0-terse")
    assert result.success
    meta = metadata(result, "prompt_experiment")
    main, candidate_experiment = opik_fake.experiments(dataset_name(SQL))
    assert main["metadata"]["prompt_version"] == V1.label and candidate_experiment["metadata"]["prompt_version"] == TERSE.label
    assert meta["candidate_experiment_id"] == candidate_experiment["id"]
    assert meta["candidate_version"] == TERSE.label
    assert meta["candidate_mean"] < 0.75 < meta["mean"]
    assert meta["experiment_location"].startswith("http") and meta["candidate_experiment_location"].startswith("http")
    terse_scores = experiment_scores(opik_fake, candidate_experiment)
    assert meta["candidate_mean"] == pytest.approx(round(mean(mean(s.values()) for s in terse_scores.values()), 4))
    rows = {r.data["metric"]: r.data for r in meta["comparison"].records}
    assert rows["ExplanationPresent"]["verdict"] == "worse" and rows["ExplanationPresent"]["ci_high"] < 0
    assert meta["verdict"] == "worse" and meta["ci_high"] < 0

    # The regression gate is on the candidate against the baseline: the worse candidate fails it.
    assert check_results(result) == {"prompt_experiment_regression": False}


def test_a_flush_failure_fails_the_run_naming_opik(pipeline, opik_fake: FakeOpik, anthropic_fake: AnthropicFake) -> None:
    instance, resources = pipeline
    opik_fake.inject("create_traces", status=500, times=1000)
    result = experiment_run(instance, resources)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    text = error.to_string()  # the step error and the OpikDatasetStoreError under it
    assert "OpikDatasetStoreError: Opik: running experiment" in text
    assert dataset_name(SQL) in text and "CreateTraceBatchMessage (HTTP 500)" in text and "incomplete" in text
    assert OPIK_TEST_API_KEY not in text and anthropic_fake.api_key not in text
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key == prompt_experiment.key]
    assert check_results(result) == {}
