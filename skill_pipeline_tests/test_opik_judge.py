"""Judge scores through the real ``opik`` SDK against the strict Opik fake: batched vs per challenge.

The batched lookup (one paged search of the project's judged traces, matched on the client) must
give exactly the per-challenge lookup's scores on the same traces, in a handful of requests; fall
back to per-challenge searches when the project holds more judged traces than it will read; and be
bounded in time like the per-challenge one.
"""

from __future__ import annotations

import logging
import math
import random
import time

import httpx
import pytest

from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore
from skill_pipeline.resources.opik_support import OpikDatasetStoreError
from skill_pipeline_tests.builders import opik_store
from skill_pipeline_tests.fakes.opik_server import OPIK_TEST_API_KEY, OPIK_TEST_WORKSPACE, FakeOpik, fast_sdk_retries

PROJECT = "skill-pipeline"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_sdk_retries(monkeypatch)


def store_for(fake: FakeOpik, **overrides: object) -> OpikDatasetStore:
    return opik_store(fake, PROJECT, **overrides)


def judged_project(fake: FakeOpik, challenges: int, seed: int = 7) -> list[str]:
    """Traces as the app's judge logs them: some challenges judged twice, some on another metric
    only, a non-finite value, traces of another project, and traces without a challenge id."""
    rng = random.Random(seed)
    ids = [f"ch-{i:05d}" for i in range(challenges)]
    for cid in ids:
        roll = rng.random()
        if roll < 0.1:
            continue  # never judged
        if roll < 0.15:
            fake.add_trace(PROJECT, {"challenge_id": cid}, {"relevance": 0.5})  # judged on something else
            continue
        for _ in range(1 + (roll > 0.8)):
            fake.add_trace(PROJECT, {"challenge_id": cid}, {"judge_composite": round(rng.random(), 3), "relevance": 0.1})
    fake.add_trace(PROJECT, {"challenge_id": ids[0]}, [("judge_composite", math.nan)])
    fake.add_trace(PROJECT, {"note": "no challenge"}, {"judge_composite": 0.3})
    fake.add_trace("another-project", {"challenge_id": ids[1]}, {"judge_composite": 1.0})
    return ids


def test_batched_and_per_challenge_lookups_give_identical_scores(opik_fake: FakeOpik) -> None:
    ids = judged_project(opik_fake, 300)
    wanted = ids[:250] + ["ch-missing", 'ch-"quoted"']
    per_challenge = store_for(opik_fake, judge_lookup="per_challenge")
    batched = store_for(opik_fake, judge_lookup="batched")
    try:
        expected = per_challenge.judge_scores(wanted)
        per_challenge_requests = len(opik_fake.requests_for("search_traces"))
        got = batched.judge_scores(wanted)
    finally:
        per_challenge.close()
        batched.close()

    assert got == expected  # identical floats, not approximately
    assert 150 < len(got) < 250 and "ch-missing" not in got
    assert per_challenge_requests == len(wanted)
    searches = opik_fake.requests_for("search_traces")[per_challenge_requests:]
    assert len(searches) == 1
    assert searches[0].body["filters"] == [
        {"field": "feedback_scores", "key": "judge_composite", "type": "feedback_scores_number",
         "operator": "is_not_empty", "value": ""}
    ]
    assert "metadata" not in searches[0].body.get("exclude", []) and "feedback_scores" not in searches[0].body["exclude"]


def test_the_batched_search_is_paged_in_few_requests(opik_fake: FakeOpik) -> None:
    ids = judged_project(opik_fake, 3_000)
    store = store_for(opik_fake)  # auto: batched for this many ids
    try:
        scores = store.judge_scores(ids)
    finally:
        store.close()
    searches = opik_fake.requests_for("search_traces")
    assert len(searches) <= 3_000 // 500 + 5
    assert len(searches) >= 2  # more judged traces than one page of 2,000
    assert 2_000 < len(scores) < 3_000


def test_too_many_judged_traces_fall_back_to_per_challenge_searches(
    opik_fake: FakeOpik, caplog: pytest.LogCaptureFixture
) -> None:
    ids = judged_project(opik_fake, 40)
    reference = store_for(opik_fake, judge_lookup="per_challenge")
    store = store_for(opik_fake, judge_batch_max_traces=10)
    try:
        expected = reference.judge_scores(ids)
        before = len(opik_fake.requests_for("search_traces"))
        with caplog.at_level(logging.WARNING):
            assert store.judge_scores(ids) == expected
    finally:
        reference.close()
        store.close()
    assert "more than 10 judged traces; looking up 40 challenges one by one" in caplog.text
    assert len(opik_fake.requests_for("search_traces")) - before == 1 + 40


def test_few_ids_are_looked_up_one_by_one(opik_fake: FakeOpik) -> None:
    judged_project(opik_fake, 30)
    store = store_for(opik_fake, judge_batch_min_challenges=5)
    try:
        store.judge_scores(["ch-00001", "ch-00002"])
    finally:
        store.close()
    assert [r.body["filters"][0]["field"] for r in opik_fake.requests_for("search_traces")] == ["metadata"] * 2


def test_a_batched_search_answered_429_forever_is_bounded(opik_fake: FakeOpik) -> None:
    ids = judged_project(opik_fake, 30)
    store = store_for(opik_fake, judge_lookup="batched", search_timeout_seconds=1.5)
    opik_fake.inject("search_traces", status=429, times=10_000, headers={"Retry-After": "0"})
    started = time.monotonic()
    try:
        with pytest.raises(OpikDatasetStoreError) as caught:
            store.judge_scores(ids)
    finally:
        store.close()
    assert time.monotonic() - started < 5
    assert "judged traces of project skill-pipeline" in str(caught.value) and "1.5 s" in str(caught.value)


def test_a_batched_search_without_a_project_finds_no_scores(opik_fake: FakeOpik) -> None:
    store = store_for(opik_fake, judge_lookup="batched")
    try:
        assert store.judge_scores(["c1", "c2"]) == {}
    finally:
        store.close()


def test_the_fake_rejects_a_value_on_an_emptiness_filter(opik_fake: FakeOpik) -> None:
    judged_project(opik_fake, 3)
    body = {"project_name": PROJECT, "limit": 10, "filters": [
        {"field": "feedback_scores", "key": "judge_composite", "type": "feedback_scores_number",
         "operator": "is_not_empty", "value": "0.5"},
    ]}
    response = httpx.post(f"{opik_fake.url}/v1/private/traces/search", json=body,
                          headers={"Authorization": OPIK_TEST_API_KEY, "Comet-Workspace": OPIK_TEST_WORKSPACE})
    assert response.status_code == 400 and "takes no value" in response.text
    assert opik_fake.take_violations()
