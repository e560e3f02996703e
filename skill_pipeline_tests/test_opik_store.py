"""OpikDatasetStore through the real ``opik`` SDK against the strict loopback fake of Opik's REST API.

The SDK's own retry back-off (about 5 s, then 6 s) is shortened by ``fast_sdk_retries``; how many
attempts it makes and what it retries are left as released.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import httpx
import pytest

from skill_pipeline.core.composition import compose_dataset
from skill_pipeline.core.generation import SyntheticScenario, item_id
from skill_pipeline.models import DATASET_SIZE, Candidate, DatasetItem, Skill, dataset_name
from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore
from skill_pipeline.resources.opik_support import OpikDatasetStoreError
from skill_pipeline_tests.builders import candidate as build_candidate, opik_store, synthetic_pool as build_pool
from skill_pipeline_tests.builders import topic_words
from skill_pipeline_tests.fakes.opik_server import (
    OPIK_TEST_API_KEY,
    OPIK_TEST_WORKSPACE,
    FakeOpik,
    fast_sdk_retries,
    is_uuid7,
    loopback_only,
)

PROJECT = "skill-pipeline"
SKILL = Skill(
    id="skill-42",
    name="Payroll reconciliation",
    description="Matching payroll ledgers against bank exports",
    created_at=datetime(2024, 3, 1, tzinfo=timezone.utc),
)
NAME = dataset_name(SKILL.id)


def synthetic_pool(skill: Skill = SKILL, variant: str = "") -> list[SyntheticScenario]:
    return build_pool(
        skill,
        scenario="An analyst reconciles payroll batch {difficulty}-{slot}" + variant + " against the bank export",
        concepts=("ledger matching", "variance threshold {difficulty}"),
        model="offline-v1",
    )


def candidate(challenge_id: str, difficulty: int, judge: float = 0.9) -> Candidate:
    return build_candidate(
        challenge_id,
        difficulty,
        question=f"Which control catches a duplicated payroll run in batch {challenge_id} ({topic_words(challenge_id)})?",
        options=["Bank reconciliation", "Headcount report", "Tax filing", "Leave balance"],
        explanation="Only the bank reconciliation compares paid totals against the ledger.",
        answer_count=6,
        correct_rate=0.83,
        response_time_score=0.72,
        user_confidence=None,
        judge_composite_score=judge,
    )


def target_items(variant: str = "") -> list[DatasetItem]:
    return compose_dataset(SKILL, synthetic_pool(variant=variant), [], []).target


def hashes(items: list[DatasetItem]) -> dict[str, str]:
    return {item.id: item.content_hash for item in items}


def fake_hashes(fake: FakeOpik, name: str = NAME) -> dict[str, str]:
    """What the fake holds, read straight from its state (not through the store under test)."""
    stored = fake.items(name)
    assert len({row["id"] for row in stored}) == len(stored), "duplicate ids in the fake's dataset"
    return {row["id"]: DatasetItem(id=row["id"], **row["data"]).content_hash for row in stored}


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_sdk_retries(monkeypatch)


def make_store(fake: FakeOpik, **overrides: object) -> OpikDatasetStore:
    return opik_store(fake, PROJECT, **overrides)


@pytest.fixture
def store(opik_fake: FakeOpik):
    store = make_store(opik_fake)
    yield store
    store.close()


# ------------------------------------------------------------------------------------ datasets
def test_backend_and_remote(store: OpikDatasetStore) -> None:
    assert store.backend == "Opik"
    assert store.is_remote is True
    assert store.judge_score_name == "judge_composite"


def test_the_client_is_built_lazily_and_writes_no_config_file(
    opik_fake: FakeOpik, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = make_store(opik_fake)
    try:
        assert opik_fake.requests == []  # building the resource sends nothing
        assert store.dataset_exists(NAME) is False
        assert store.client().config.url_override.rstrip("/") == opik_fake.url
        assert store.client().config.workspace == OPIK_TEST_WORKSPACE
        assert store.client().project_name == PROJECT
    finally:
        store.close()
    assert not (tmp_path / ".opik.config").exists()
    assert list(tmp_path.iterdir()) == []


def test_ensure_dataset_creates_once_and_reuses(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    assert store.dataset_exists(NAME) is False
    store.ensure_dataset(NAME, "scenarios of skill-42")
    store.ensure_dataset(NAME, "scenarios of skill-42")
    assert store.dataset_exists(NAME) is True
    assert opik_fake.dataset_names() == [NAME]
    creates = opik_fake.requests_for("create_dataset")
    assert len(creates) == 1
    assert creates[0].body == {"name": NAME, "project_name": PROJECT, "description": "scenarios of skill-42"}
    # A fresh dataset has no version yet; items read as empty, not as an error.
    assert store.read_items(NAME) == []
    assert store.dataset_version(NAME) is None


def test_racing_create_answered_409_uses_the_other_runs_dataset(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    # Another run creates the dataset between our lookup (404) and our create (409).
    opik_fake.create_dataset_directly(NAME, PROJECT)
    opik_fake.inject("retrieve_dataset", status=404)
    store.ensure_dataset(NAME, "scenarios")
    statuses = [(r.operation, r.status) for r in opik_fake.requests if r.operation in ("retrieve_dataset", "create_dataset")]
    assert statuses[:3] == [("retrieve_dataset", 404), ("create_dataset", 409), ("retrieve_dataset", 200)]
    assert opik_fake.dataset_names() == [NAME]


def test_write_then_read_back_50_items(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    items = target_items()
    assert len(items) == DATASET_SIZE
    assert all(item.id == item_id(SKILL.id, item.item_key, SKILL.created_at) for item in items)
    store.ensure_dataset(NAME, "scenarios")
    store.write_items(NAME, items)

    back = store.read_items(NAME)
    assert hashes(back) == hashes(items)
    assert fake_hashes(opik_fake) == hashes(items)
    stored = opik_fake.items(NAME)
    assert {row["source"] for row in stored} == {"sdk"}
    assert all(set(row["data"]) == {"input", "expected_output", "metadata"} for row in stored)
    assert Counter(row["data"]["metadata"]["source"] for row in stored) == {"synthetic": 50}
    # The backend lists newest id first, and the store hands them back as listed.
    assert [item.id for item in back] == sorted(hashes(items), reverse=True)
    # One write: one PUT, gzip-encoded, one new version; the read was pinned to that version.
    writes = opik_fake.requests_for("write_items")
    assert len(writes) == 1 and writes[0].gzipped
    assert writes[0].body["dataset_name"] == NAME and writes[0].body["project_name"] == PROJECT
    assert is_uuid7(writes[0].body["batch_group_id"])
    versions = opik_fake.versions(NAME)
    assert [v["version_name"] for v in versions] == ["v1"]
    assert opik_fake.requests_for("read_items")[-1].query["version"] == versions[0]["version_hash"]
    assert store.dataset_version(NAME) == "v1"


def test_rewrite_with_one_changed_item_keeps_50_without_duplicates(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    items = target_items()
    store.ensure_dataset(NAME, "scenarios")
    store.write_items(NAME, items)
    changed = items[7].model_copy(update={"input": {**items[7].input, "scenario": items[7].input["scenario"] + " twice"}})
    assert changed.content_hash != items[7].content_hash
    rewritten = items[:7] + [changed] + items[8:]
    store.write_items(NAME, rewritten)

    back = store.read_items(NAME)
    assert len(back) == 50
    assert hashes(back) == hashes(rewritten)
    assert fake_hashes(opik_fake) == hashes(rewritten)
    assert store.dataset_version(NAME) == "v2"


def test_delete_by_id_and_never_outside_the_dataset(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    items = target_items()
    other_skill = SKILL.model_copy(update={"id": "skill-7"})
    other_items = compose_dataset(other_skill, synthetic_pool(other_skill), [], []).target
    other = dataset_name(other_skill.id)
    for name, batch in ((NAME, items), (other, other_items)):
        store.ensure_dataset(name, "scenarios")
        store.write_items(name, batch)

    doomed = [items[0].id, items[25].id, items[49].id]
    # An id of the other dataset: Opik deletes by id across datasets, the store must not.
    store.delete_items(NAME, doomed + [other_items[3].id])
    left = store.read_items(NAME)
    assert len(left) == 47
    assert not set(doomed) & {item.id for item in left}
    assert len(fake_hashes(opik_fake, other)) == 50
    delete_bodies = [r.body for r in opik_fake.requests_for("delete_items")]
    assert len(delete_bodies) == 1 and sorted(delete_bodies[0]["item_ids"]) == sorted(doomed)
    assert store.dataset_version(NAME) == "v2"


def test_reads_every_page(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    """2,100 items: three PUT batches of at most 1,000 in one version, read back over two pages."""
    base = target_items()[0]
    many = [
        base.model_copy(
            update={
                "id": item_id(SKILL.id, f"bulk-{n}", SKILL.created_at),
                "metadata": {**base.metadata, "item_id": f"bulk-{n}"},
            }
        )
        for n in range(2100)
    ]
    store.ensure_dataset(NAME, "scenarios")
    store.write_items(NAME, many)
    assert [len(r.body["items"]) for r in opik_fake.requests_for("write_items")] == [1000, 1000, 100]
    assert len(opik_fake.versions(NAME)) == 1
    back = store.read_items(NAME)
    assert hashes(back) == hashes(many)
    assert sorted(r.query["page"] for r in opik_fake.requests_for("read_items")) == ["1", "2"]


def test_sync_end_to_end_then_rerun_writes_nothing(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    pool = synthetic_pool()
    first = compose_dataset(SKILL, pool, [], store.read_items(NAME))
    report = store.sync(NAME, "scenarios", first)
    assert (report.inserted, report.updated, report.deleted) == (50, 0, 0)
    assert report.version == "v1"
    assert fake_hashes(opik_fake) == hashes(first.target)

    writes_before = len(opik_fake.requests_for("write_items"))
    again = compose_dataset(SKILL, pool, [], store.read_items(NAME))
    assert again.to_write == [] and again.to_delete == []
    report = store.sync(NAME, "scenarios", again)
    assert (report.inserted, report.updated, report.deleted, report.unchanged) == (0, 0, 0, 50)
    assert report.version == "v1"
    assert len(opik_fake.requests_for("write_items")) == writes_before
    assert opik_fake.requests_for("delete_items") == []

    # Two promotions displace two synthetic items: insert first, then delete; still 50.
    promoted = compose_dataset(SKILL, pool, [candidate("ch-1", 3), candidate("ch-2", 8)], store.read_items(NAME))
    report = store.sync(NAME, "scenarios", promoted)
    assert (report.inserted, report.deleted) == (2, 2)
    assert fake_hashes(opik_fake) == hashes(promoted.target)
    assert Counter(row["data"]["metadata"]["source"] for row in opik_fake.items(NAME)) == {
        "synthetic": 48,
        "real_world": 2,
    }
    assert report.version == "v3"


# ------------------------------------------------------------------------------------ judge scores
def test_judge_scores_per_challenge(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    opik_fake.add_trace(PROJECT, {"challenge_id": "c1"}, {"judge_composite": 0.8, "relevance": 0.1})
    opik_fake.add_trace(PROJECT, {"challenge_id": "c2"}, {"judge_composite": 0.6})
    opik_fake.add_trace(PROJECT, {"challenge_id": "c2"}, {"judge_composite": 0.9})
    opik_fake.add_trace(PROJECT, {"challenge_id": "c3"}, {"relevance": 0.99})  # judged on something else only
    opik_fake.add_trace("another-project", {"challenge_id": "c5"}, {"judge_composite": 1.0})
    opik_fake.add_trace(PROJECT, {"challenge_id": 'c"6'}, {"judge_composite": 0.4})

    scores = store.judge_scores(["c1", "c2", "c3", "c4", "c5", 'c"6', "c1"])
    assert scores == {"c1": pytest.approx(0.8), "c2": pytest.approx(0.75), 'c"6': pytest.approx(0.4)}
    searches = opik_fake.requests_for("search_traces")
    assert len(searches) == 6  # one per distinct id
    filters = [r.body["filters"] for r in searches]
    assert {"field": "metadata", "operator": "=", "key": "challenge_id", "value": "c1", "type": "dictionary"} in [
        f[0] for f in filters
    ]
    assert all(r.body["project_name"] == PROJECT for r in searches)


def test_judge_scores_bound_their_concurrency(opik_fake: FakeOpik) -> None:
    store = make_store(opik_fake, judge_concurrency=2)
    try:
        ids = [f"c{n}" for n in range(6)]
        for cid in ids:
            opik_fake.add_trace(PROJECT, {"challenge_id": cid}, {"judge_composite": 0.5})
        opik_fake.inject("search_traces", "slow", times=6, delay=0.2)
        started = time.monotonic()
        assert store.judge_scores(ids) == {cid: 0.5 for cid in ids}
        assert opik_fake.max_in_flight["search_traces"] == 2
        assert time.monotonic() - started >= 0.55  # three waves of 0.2 s
    finally:
        store.close()


def test_judge_scores_without_a_project_are_absent(store: OpikDatasetStore) -> None:
    assert store.judge_scores(["c1", "c2"]) == {}
    assert store.judge_scores([]) == {}


def test_a_search_answered_429_forever_is_bounded_by_our_timeout(opik_fake: FakeOpik) -> None:
    store = make_store(opik_fake, search_timeout_seconds=1.5)
    try:
        opik_fake.add_trace(PROJECT, {"challenge_id": "c1"}, {"judge_composite": 0.8})
        opik_fake.inject("search_traces", status=429, times=10_000, headers={"Retry-After": "0"})
        started = time.monotonic()
        with pytest.raises(OpikDatasetStoreError) as caught:
            store.judge_scores(["c1"])
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "Opik" in message and PROJECT in message and "c1" in message and "1.5 s" in message
    finally:
        store.close()


def test_a_failing_search_is_an_error_not_a_missing_score(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    opik_fake.add_trace(PROJECT, {"challenge_id": "c1"}, {"judge_composite": 0.8})
    opik_fake.inject("search_traces", status=500, times=3)
    with pytest.raises(OpikDatasetStoreError, match="HTTP 500"):
        store.judge_scores(["c1"])


# ------------------------------------------------------------------------------------ faults
def seeded(store: OpikDatasetStore) -> list[DatasetItem]:
    items = target_items()
    store.sync(NAME, "scenarios", compose_dataset(SKILL, synthetic_pool(), [], []))
    return items


def test_a_500_on_a_write_is_retried_by_the_sdk(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    store.ensure_dataset(NAME, "scenarios")
    opik_fake.inject("write_items", status=500)
    items = target_items()
    store.write_items(NAME, items)
    assert [r.status for r in opik_fake.requests_for("write_items")] == [500, 204]
    assert fake_hashes(opik_fake) == hashes(items)


def test_a_write_failing_past_the_sdk_retries_is_retried_through_a_fresh_handle(
    store: OpikDatasetStore, opik_fake: FakeOpik
) -> None:
    store.ensure_dataset(NAME, "scenarios")
    retrieves_before = len(opik_fake.requests_for("retrieve_dataset"))
    opik_fake.inject("write_items", status=503, times=3)  # the SDK's three attempts all fail
    items = target_items()
    store.write_items(NAME, items)
    writes = opik_fake.requests_for("write_items")
    assert [r.status for r in writes] == [503, 503, 503, 204]
    assert len(writes[-1].body["items"]) == 50  # nothing silently dropped on the second attempt
    assert len(opik_fake.requests_for("retrieve_dataset")) - retrieves_before == 2  # one fresh handle each
    assert fake_hashes(opik_fake) == hashes(items)


def test_a_persistent_500_fails_the_sync_without_shrinking_or_duplicating(
    store: OpikDatasetStore, opik_fake: FakeOpik
) -> None:
    before = seeded(store)
    promoted = compose_dataset(SKILL, synthetic_pool(), [candidate("ch-1", 3), candidate("ch-2", 8)], before)
    assert promoted.to_delete
    opik_fake.inject("write_items", status=500, times=100)
    with pytest.raises(OpikDatasetStoreError) as caught:
        store.sync(NAME, "scenarios", promoted)
    message = str(caught.value)
    assert "Opik" in message and NAME in message and "HTTP 500" in message
    assert opik_fake.requests_for("delete_items") == []  # insert before delete: nothing was removed
    assert fake_hashes(opik_fake) == hashes(before)


@pytest.mark.parametrize("kind", ["drop", "drop_after"])
def test_a_dropped_connection_on_a_write_neither_loses_nor_duplicates(
    store: OpikDatasetStore, opik_fake: FakeOpik, kind: str
) -> None:
    store.ensure_dataset(NAME, "scenarios")
    opik_fake.inject("write_items", kind)
    items = target_items()
    store.write_items(NAME, items)
    assert [r.fault for r in opik_fake.requests_for("write_items")] == [kind, None]
    assert fake_hashes(opik_fake) == hashes(items)
    assert len(opik_fake.items(NAME)) == 50


def test_a_write_answered_429_forever_is_bounded_by_our_timeout(opik_fake: FakeOpik) -> None:
    store = make_store(opik_fake, write_timeout_seconds=1.5)
    try:
        before = seeded(store)
        changed = target_items(variant=" revised")
        opik_fake.inject("write_items", status=429, times=10_000, headers={"Retry-After": "0"})
        started = time.monotonic()
        with pytest.raises(OpikDatasetStoreError) as caught:
            store.write_items(NAME, changed)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "Opik" in message and NAME in message and "1.5 s" in message
        assert fake_hashes(opik_fake) == hashes(before)
    finally:
        store.close()


def test_a_slow_answer_is_waited_for(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    items = seeded(store)
    opik_fake.inject("read_items", "slow", delay=0.5)
    assert hashes(store.read_items(NAME)) == hashes(items)


def test_a_persistent_500_on_a_delete_leaves_more_items_not_fewer(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    items = seeded(store)
    opik_fake.inject("delete_items", status=500, times=100)
    with pytest.raises(OpikDatasetStoreError) as caught:
        store.delete_items(NAME, [items[0].id])
    assert "Opik" in str(caught.value) and NAME in str(caught.value)
    assert fake_hashes(opik_fake) == hashes(items)


def test_a_failing_read_names_opik_and_the_dataset(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    seeded(store)
    opik_fake.inject("read_items", status=500, times=3)
    with pytest.raises(OpikDatasetStoreError) as caught:
        store.read_items(NAME)
    assert "Opik" in str(caught.value) and NAME in str(caught.value)


def test_items_that_opik_would_refuse_are_refused_before_sending(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    store.ensure_dataset(NAME, "scenarios")
    item = target_items()[0].model_copy(update={"id": "6f1c0f3e-5b1d-4c39-9a53-2a1d8c0e4b11"})  # version 4
    with pytest.raises(OpikDatasetStoreError, match="UUID version 7"):
        store.write_items(NAME, [item])
    assert opik_fake.requests_for("write_items") == []


def test_an_item_not_in_our_shape_is_reported_with_its_id(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    store.ensure_dataset(NAME, "scenarios")
    dataset = store.client().get_dataset(NAME, project_name=PROJECT)
    foreign = "01900000-0000-7000-8000-0000000000aa"
    dataset.insert([{"id": foreign, "question": "added by hand in the UI"}])
    with pytest.raises(OpikDatasetStoreError, match=foreign):
        store.read_items(NAME)


def test_the_api_key_never_appears_in_errors_or_logs(
    opik_fake: FakeOpik, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    store = make_store(opik_fake, write_timeout_seconds=1.5)
    wrong_key = "wrong-opik-key-5d41402abc4b2a76"
    intruder = make_store(opik_fake, api_key=wrong_key)
    messages: list[str] = []
    try:
        seeded(store)
        opik_fake.inject("write_items", status=500, times=3 * 3)
        with pytest.raises(OpikDatasetStoreError) as failed_write:
            store.write_items(NAME, target_items(variant=" v2"))
        messages.append(str(failed_write.value))
        opik_fake.inject("write_items", status=429, times=10_000, headers={"Retry-After": "0"})
        with pytest.raises(OpikDatasetStoreError) as timed_out:
            store.write_items(NAME, target_items(variant=" v3"))
        messages.append(str(timed_out.value))
        with pytest.raises(OpikDatasetStoreError) as refused:
            intruder.read_items(NAME)
        messages.append(str(refused.value))
        assert "HTTP 401" in messages[-1]
    finally:
        store.close()
        intruder.close()
    captured = capfd.readouterr()
    for text in [*messages, caplog.text, captured.out, captured.err]:
        assert OPIK_TEST_API_KEY not in text
        assert wrong_key not in text
    for message in messages:
        assert "Opik" in message and NAME in message


# ------------------------------------------------------------------------------------ SDK facts the store relies on
def test_sdk_silently_skips_a_retried_insert_on_the_same_dataset_object(
    store: OpikDatasetStore, opik_fake: FakeOpik
) -> None:
    """Why every write goes through a fresh handle: after a failed insert, the same object sends nothing."""
    store.ensure_dataset(NAME, "scenarios")
    client = store.client()
    dataset = client.get_dataset(NAME, project_name=PROJECT)
    payload = [
        {"id": item.id, "input": item.input, "expected_output": item.expected_output, "metadata": item.metadata}
        for item in target_items()[:5]
    ]
    opik_fake.inject("write_items", status=500, times=3)
    with pytest.raises(Exception):
        dataset.insert(payload)
    puts = len(opik_fake.requests_for("write_items"))
    dataset.insert(payload)  # no error...
    assert len(opik_fake.requests_for("write_items")) == puts  # ...and nothing sent
    assert opik_fake.items(NAME) == []
    client.get_dataset(NAME, project_name=PROJECT).insert(payload)  # a fresh handle syncs hashes and sends
    assert len(opik_fake.items(NAME)) == 5
    # The default (deduplicating, parallel) insert path probed the backend version and streamed
    # the stored items to rebuild its hashes: the fake serves both as the SDK expects.
    assert opik_fake.requests_for("is_alive_ver")
    assert opik_fake.requests_for("stream_items")


def test_fake_rejects_what_opik_rejects(store: OpikDatasetStore, opik_fake: FakeOpik) -> None:
    store.ensure_dataset(NAME, "scenarios")
    dataset = store.client().get_dataset(NAME, project_name=PROJECT)
    with pytest.raises(Exception):
        dataset.insert([{"id": "6f1c0f3e-5b1d-4c39-9a53-2a1d8c0e4b11", "input": {}}], deduplication=False)
    with pytest.raises(Exception):
        dataset.insert([{"id": "01900000-0000-7000-8000-0000000000ab", "source": "synthetic", "input": {}}])
    response = httpx.get(f"{opik_fake.url}/v1/private/nowhere")
    assert response.status_code == 404
    violations = opik_fake.take_violations()
    assert len(violations) == 3
    assert "version 7" in violations[0]
    assert "source 'synthetic'" in violations[1]
    assert "unknown endpoint GET /api/v1/private/nowhere" in violations[2]
    assert opik_fake.items(NAME) == []


def test_fake_serves_concurrent_clients(opik_fake: FakeOpik) -> None:
    """Two runs creating the same dataset at once: exactly one create wins, neither run fails."""
    stores = [make_store(opik_fake) for _ in range(2)]
    errors: list[BaseException] = []

    def run(store: OpikDatasetStore) -> None:
        try:
            store.ensure_dataset(NAME, "scenarios")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in stores:
        store.close()
    assert errors == []
    assert opik_fake.dataset_names() == [NAME]
    assert [r.status for r in opik_fake.requests_for("create_dataset")].count(201) == 1


def test_the_network_guard_refuses_anything_but_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []
    loopback_only(monkeypatch, attempts)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("203.0.113.7", 443), timeout=0.5)  # TEST-NET-3, never routed
    assert attempts == ["('203.0.113.7', 443)"]
