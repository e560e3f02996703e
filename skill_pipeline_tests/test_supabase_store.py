"""SupabaseSkillStore through the real ``supabase`` SDK against the strict loopback PostgREST."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from skill_pipeline.resources.skill_store import ANSWER_COLUMNS, CHALLENGE_COLUMNS, SkillNotFound

from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore, connect

from skill_pipeline.resources.supabase_rows import SupabaseReadError

from skill_pipeline.resources.skill_store_supabase import SupabaseSkillStore
from skill_pipeline_tests.fakes.postgrest_server import PostgrestFake, serve_postgrest

SKILL = "skill-python"
OTHER = "skill-sql"
CREATED = "2024-05-01T10:00:00+00:00"


def make_store(fake: PostgrestFake, **overrides: Any) -> SupabaseSkillStore:
    # One keyset read of the answers, so that these tests can follow its pages one by one; the reads
    # in parallel over ranges of challenge ids (the default) are tested below on top of it.
    settings: dict[str, Any] = {"url": fake.url, "key": fake.key, "retry_backoff_seconds": 0.01, "timeout_seconds": 5,
                                "answer_streams": 1}
    settings.update(overrides)
    return SupabaseSkillStore(**settings)


def skill_rows() -> list[dict[str, Any]]:
    return [
        {"id": SKILL, "name": "Python", "description": "Writing Python", "active": True, "created_at": CREATED},
        {"id": OTHER, "name": "SQL", "description": None, "active": True, "created_at": "2024-06-02T08:30:15.123456+00:00"},
        {"id": "skill-cobol", "name": "COBOL", "description": "retired", "active": False, "created_at": CREATED},
    ]


def challenge_rows(skill: str, count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i:05d}", "skill_id": skill, "difficulty": 1 + i % 10, "question": f"{skill} question {i}?",
            "options_json": [f"option {i}.{k}" for k in range(4)], "correct_option": i % 4,
            "explanation": None if i % 3 == 0 else f"because {i}", "created_at": CREATED,
        }
        for i in range(count)
    ]


def answer_rows(challenges: list[dict[str, Any]], count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i:06d}", "challenge_id": challenges[(i * 7) % len(challenges)]["id"],
            "user_id": f"user-{i % 97}",
            "is_correct": i % 3 != 0, "response_time": None if i % 11 == 0 else 4_000 + i,
            "confidence": None if i % 5 == 0 else 1 + i % 5, "created_at": CREATED,
        }
        for i in range(count)
    ]


class Dataset:
    """Challenges and answers for SKILL, and a little of another skill around them."""

    def __init__(self, challenges: int, answers: int) -> None:
        self.skills = skill_rows()
        self.challenges = challenge_rows(SKILL, challenges, "ch")
        self.other_challenges = challenge_rows(OTHER, 40, "ot")
        self.answers = answer_rows(self.challenges, answers, "an")
        self.other_answers = answer_rows(self.other_challenges, 300, "oa")

    def load(self, fake: PostgrestFake) -> None:
        fake.load("skills", self.skills)
        fake.load("challenges", self.challenges + self.other_challenges)
        fake.load("answers", self.answers + self.other_answers)

    def load_sqlite(self, path: Path) -> SqliteSkillStore:
        conn = connect(path)
        with conn:
            conn.executemany(
                "insert into skills values (?, ?, ?, ?, ?)",
                [(s["id"], s["name"], s["description"] or "", int(s["active"]), s["created_at"]) for s in self.skills],
            )
            conn.executemany(
                "insert into challenges values (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (c["id"], c["skill_id"], c["difficulty"], c["question"],
                     json.dumps(c["options_json"], ensure_ascii=False), c["correct_option"], c["explanation"],
                     c["created_at"])
                    for c in self.challenges + self.other_challenges
                ],
            )
            conn.executemany(
                "insert into answers values (?, ?, ?, ?, ?, ?, ?)",
                [
                    (a["id"], a["challenge_id"], a["user_id"], int(a["is_correct"]), a["response_time"], a["confidence"],
                     a["created_at"])
                    for a in self.answers + self.other_answers
                ],
            )
        conn.close()
        return SqliteSkillStore(path=str(path))

    def expected_answers(self) -> Counter:
        return Counter(
            _answer_key(a["challenge_id"], a["is_correct"], a["response_time"], a["confidence"]) for a in self.answers
        )


def _answer_key(challenge_id: str, is_correct: Any, response_time: Any, confidence: Any) -> tuple:
    def norm(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return challenge_id, bool(is_correct), norm(response_time), norm(confidence)


def frame_answers(frame: pd.DataFrame) -> Counter:
    columns = ["challenge_id", "is_correct", "response_time", "confidence"]
    return Counter(_answer_key(*row) for row in frame[columns].itertuples(index=False, name=None))


@pytest.fixture
def fake() -> Iterator[PostgrestFake]:
    """The strict PostgREST; a request it had to reject fails the test unless the test took it."""
    with serve_postgrest() as server:
        yield server


@pytest.fixture
def dataset(fake: PostgrestFake) -> Dataset:
    """A small skill: 250 challenges, 520 answers."""
    data = Dataset(250, 520)
    data.load(fake)
    return data


@pytest.fixture
def big_dataset(fake: PostgrestFake) -> Dataset:
    """Past hosted PostgREST's 1000-row cap: 2,500 challenges, 5,200 answers."""
    data = Dataset(2_500, 5_200)
    data.load(fake)
    return data


# -- the wire --------------------------------------------------------------------------------------


def test_the_sdk_sends_what_the_fake_serves(fake: PostgrestFake, dataset: Dataset) -> None:
    make_store(fake).list_skills()

    (request,) = fake.requests
    assert request.method == "GET" and request.path == "/rest/v1/skills"
    assert request.params == [
        ("select", "id,name,description,active,created_at"), ("active", "eq.true"), ("order", "id.asc"),
        ("limit", "1000"),
    ]
    assert request.headers["prefer"] == "count=exact"
    assert request.headers["apikey"] == "<right key>"
    assert request.headers["authorization"] == "<bearer right key>"
    assert request.headers["accept-profile"] == "public"
    assert request.status == 200


# -- skills ----------------------------------------------------------------------------------------


def test_list_skills_excludes_inactive_and_parses_timestamps(fake: PostgrestFake, dataset: Dataset) -> None:
    store = make_store(fake)

    active = store.list_skills()
    everything = store.list_skills(active_only=False)

    assert [s.id for s in active] == [SKILL, OTHER]
    assert [s.id for s in everything] == ["skill-cobol", SKILL, OTHER]
    sql = next(s for s in active if s.id == OTHER)
    assert sql.description == ""
    assert sql.created_at == datetime(2024, 6, 2, 8, 30, 15, 123456, tzinfo=timezone.utc)
    assert store.backend == "supabase"


def test_list_skills_pages_when_the_server_caps_below_the_page_size(fake: PostgrestFake) -> None:
    fake.max_rows = 40
    fake.load("skills", [
        {"id": f"s{i:04d}", "name": f"Skill {i}", "description": "", "active": i % 4 != 0, "created_at": CREATED}
        for i in range(130)
    ])

    skills = make_store(fake, page_size=1000).list_skills()

    assert [s.id for s in skills] == [f"s{i:04d}" for i in range(130) if i % 4 != 0]
    # Short pages (the server's cap) do not end the read before the first page's exact count is reached.
    assert [r.position for r in fake.requests] == [0, 40, 80]
    assert [r.param("id") for r in fake.requests] == [None, "gt.s0053", "gt.s0106"]


def test_get_skill_and_unknown_skill(fake: PostgrestFake, dataset: Dataset) -> None:
    store = make_store(fake)

    skill = store.get_skill(SKILL)
    assert (skill.id, skill.name, skill.description, skill.active) == (SKILL, "Python", "Writing Python", True)
    assert skill.created_at == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)

    with pytest.raises(SkillNotFound, match="skill-rust"):
        store.get_skill("skill-rust")


# -- challenges and answers ------------------------------------------------------------------------


def test_every_challenge_and_answer_is_read_exactly_once_past_the_row_cap(
    fake: PostgrestFake, big_dataset: Dataset
) -> None:
    dataset = big_dataset
    data = make_store(fake).load_challenges(SKILL)

    assert list(data.challenges.columns) == CHALLENGE_COLUMNS
    assert list(data.answers.columns) == ANSWER_COLUMNS
    assert len(data.challenges) == 2_500 and data.challenges["id"].is_unique
    assert list(data.challenges["id"]) == sorted(c["id"] for c in dataset.challenges)
    assert len(data.answers) == 5_200
    assert frame_answers(data.answers) == dataset.expected_answers()  # each answer once, none of the other skill
    assert set(data.answers["challenge_id"]) <= set(data.challenges["id"])

    challenge_pages = fake.requests_for("challenges")
    answer_pages = fake.requests_for("answers")
    assert [r.position for r in challenge_pages] == [0, 1000, 2000]
    assert [r.position for r in answer_pages] == [0, 1000, 2000, 3000, 4000, 5000]
    assert data.read_path == "keyset"
    for pages in (challenge_pages, answer_pages):
        first, *rest = pages
        assert first.headers["prefer"] == "count=exact" and first.status == 206  # the exact count, once
        assert first.param("id") is None and first.param("offset") is None
        for before, request in zip(pages, rest):
            assert "prefer" not in request.headers and request.status == 200
            assert request.param("id", ) is not None and request.param("id").startswith("gt.")
        for request in pages:
            assert request.param("order") == "id.asc" and request.param("limit") == "1000"


@pytest.mark.parametrize("streams", [2, 4, 7])
def test_answers_read_as_parallel_keyset_reads_over_challenge_ranges_are_the_same_answers(
    fake: PostgrestFake, big_dataset: Dataset, streams: int
) -> None:
    one = make_store(fake).load_challenges(SKILL)
    fake.requests.clear()
    data = make_store(fake, answer_streams=streams).load_challenges(SKILL)

    assert frame_answers(data.answers) == big_dataset.expected_answers() == frame_answers(one.answers)
    pd.testing.assert_frame_equal(data.challenges, one.challenges)
    answer_pages = fake.requests_for("answers")
    ranges = {tuple(v for k, v in r.params if k == "challenge_id") for r in answer_pages}
    assert len(ranges) == streams
    firsts = [r for r in answer_pages if r.headers.get("prefer") == "count=exact"]
    assert len(firsts) == streams  # each range: its own exact count, once
    # The ranges cut the sorted challenge ids: the first is open below, the last open above, and
    # each cut is one range's lt and the next one's gte.
    lows = sorted(v[4:] for b in ranges for v in b if v.startswith("gte."))
    highs = sorted(v[3:] for b in ranges for v in b if v.startswith("lt."))
    assert lows == highs and len(lows) == streams - 1
    assert set(lows) <= set(data.challenges["id"])
    assert sum(1 for r in answer_pages if r.param("id") is None) == streams


def test_a_fault_in_one_of_the_parallel_reads_is_retried_and_the_read_is_complete(
    fake: PostgrestFake, big_dataset: Dataset
) -> None:
    fake.inject("missing_rows", table="answers", times=1)
    data = make_store(fake, answer_streams=4).load_challenges(SKILL)
    assert frame_answers(data.answers) == big_dataset.expected_answers()


def test_user_ids_stay_in_the_store_and_no_correctness_filter_is_ever_requested(
    fake: PostgrestFake, dataset: Dataset
) -> None:
    store = make_store(fake)
    store.list_skills()
    store.get_skill(SKILL)
    data = store.load_challenges(SKILL)

    gets = [r for r in fake.requests if r.method == "GET"]
    assert gets
    for request in gets:
        # Only the answers read selects user_id, to pseudonymise it as the page is read.
        assert ("user_id" in request.query) == (request.table == "answers")
        assert "*" not in (request.param("select") or "*")
        assert "is_correct=" not in request.query  # the seed's answers.is_correct=eq.true / eq.undefined
        assert "undefined" not in request.query
    assert "user_id" not in data.answers.columns
    keys = set(data.answers["user_key"])
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys)
    assert keys.isdisjoint(a["user_id"] for a in dataset.answers)
    assert len(keys) == len({a["user_id"] for a in dataset.answers})


def test_supabase_and_sqlite_return_equal_frames(fake: PostgrestFake, big_dataset: Dataset, tmp_path: Path) -> None:
    dataset = big_dataset
    supabase_store = make_store(fake)
    sqlite_store = dataset.load_sqlite(tmp_path / "app.db")

    assert supabase_store.list_skills() == sqlite_store.list_skills()
    assert supabase_store.list_skills(active_only=False) == sqlite_store.list_skills(active_only=False)
    assert supabase_store.get_skill(OTHER) == sqlite_store.get_skill(OTHER)

    remote = supabase_store.load_challenges(SKILL)
    local = sqlite_store.load_challenges(SKILL)
    for name, columns in (("challenges", CHALLENGE_COLUMNS), ("answers", ANSWER_COLUMNS)):
        ours = getattr(remote, name).sort_values(columns).reset_index(drop=True)
        theirs = getattr(local, name).sort_values(columns).reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=True)


def test_a_challenge_with_many_answers_gets_all_of_them(fake: PostgrestFake) -> None:
    fake.load("skills", skill_rows())
    challenges = challenge_rows(SKILL, 3, "ch")
    fake.load("challenges", challenges)
    answers = [
        {"id": f"an-{i:05d}", "challenge_id": challenges[0]["id"], "user_id": f"u{i}", "is_correct": i % 4 == 0,
         "response_time": 3_000 + i, "confidence": 1 + i % 5, "created_at": CREATED}
        for i in range(2_345)
    ]
    fake.load("answers", answers)

    data = make_store(fake).load_challenges(SKILL)

    mine = data.answers[data.answers["challenge_id"] == challenges[0]["id"]]
    assert len(mine) == 2_345
    assert mine["is_correct"].mean() == pytest.approx(sum(a["is_correct"] for a in answers) / 2_345)  # not 1.0
    assert sorted(mine["response_time"]) == [float(3_000 + i) for i in range(2_345)]


def test_a_skill_without_challenges_gives_empty_frames_with_the_columns(fake: PostgrestFake, dataset: Dataset) -> None:
    data = make_store(fake).load_challenges("skill-cobol")

    assert data.challenges.empty and list(data.challenges.columns) == CHALLENGE_COLUMNS
    assert data.answers.empty and list(data.answers.columns) == ANSWER_COLUMNS
    assert data.answers["is_correct"].dtype == bool


def test_rows_written_while_paging_neither_shift_nor_repeat_the_others(
    fake: PostgrestFake, dataset: Dataset, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Keyset pages: a row written behind the cursor waits for the next run, one ahead of it is read;
    neither moves the rows already counted, so the read is not started again (offset paging had to)."""
    caplog.set_level(logging.INFO)
    fake.max_rows = 100
    original = SupabaseSkillStore._execute
    pages: list[str] = []

    def execute_then_insert(self, client, build, table, skill):  # type: ignore[no-untyped-def]
        response = original(self, client, build, table, skill)
        pages.append(table)
        if table == "answers" and pages.count("answers") == 2:
            fake.load("answers", [{
                "id": answer_id, "challenge_id": dataset.challenges[0]["id"], "user_id": "user-new",
                "is_correct": False, "response_time": 1_234, "confidence": 2, "created_at": CREATED,
            } for answer_id in ("an-0000000-new", "an-999999-new")])
        return response

    monkeypatch.setattr(SupabaseSkillStore, "_execute", execute_then_insert)
    data = make_store(fake, page_size=100, read_path="keyset").load_challenges(SKILL)

    expected = dataset.expected_answers() + Counter([_answer_key(dataset.challenges[0]["id"], False, 1_234, 2)])
    assert frame_answers(data.answers) == expected
    assert "did not add up" not in caplog.text
    assert "1 row(s) of table 'answers' for skill 'skill-python' were written during the read" in caplog.text
    assert len(fake.requests_for("answers")) == 6  # one pass: 521 rows in pages of 100


def test_answers_to_a_challenge_created_after_the_challenge_read_wait_for_the_next_run(
    fake: PostgrestFake, dataset: Dataset, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = SupabaseSkillStore._read_all
    late = challenge_rows(SKILL, 1, "zz-late")

    def read_then_write(self, client, table, columns, skill, filters, sink=list):  # type: ignore[no-untyped-def]
        rows = original(self, client, table, columns, skill, filters, sink)
        if table == "challenges":
            fake.load("challenges", late)
            fake.load("answers", answer_rows(late, 3, "zz-an"))
        return rows

    monkeypatch.setattr(SupabaseSkillStore, "_read_all", read_then_write)
    data = make_store(fake).load_challenges(SKILL)

    assert late[0]["id"] not in set(data.answers["challenge_id"])
    assert frame_answers(data.answers) == dataset.expected_answers()
    assert "3 answer(s) for skill 'skill-python' belong to challenges created after the challenge read" in caplog.text


# -- faults ----------------------------------------------------------------------------------------

def timeout_for(fault: dict[str, Any]) -> float:
    """Short enough for a slow response to time out quickly, long enough for a loaded CI machine."""
    return 0.75 if fault["kind"] == "slow" else 10.0


RECOVERABLE = [
    pytest.param({"kind": "status_503", "times": 2}, id="503-twice"),
    pytest.param({"kind": "drop_connection", "times": 1}, id="dropped-connection"),
    pytest.param({"kind": "slow", "times": 1, "delay": 5.0}, id="timeout"),
    pytest.param({"kind": "missing_rows", "times": 1}, id="page-missing-rows-once"),
]


@pytest.mark.parametrize("fault", RECOVERABLE)
def test_transient_faults_are_retried_and_the_read_is_complete(
    fake: PostgrestFake, dataset: Dataset, fault: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.max_rows = 100  # pages of 100 rows: the fault hits the second page of several
    fake.inject(table="answers", offset=100, **fault)
    store = make_store(fake, timeout_seconds=timeout_for(fault), page_size=100)

    started = time.monotonic()
    data = store.load_challenges(SKILL)

    assert time.monotonic() - started < 5.0  # a fractional timeout is kept (postgrest's own option makes it 0)
    assert frame_answers(data.answers) == dataset.expected_answers()
    assert sum(1 for r in fake.requests_for("answers") if r.position == 100) == 1 + fault["times"]
    assert fake.key not in caplog.text


FATAL = [
    pytest.param({"kind": "status_500"}, "answers", 1, "XX000", id="500-not-retried"),
    pytest.param({"kind": "status_503", "times": None}, "answers", 3, "HTTP 503", id="503-for-good"),
    pytest.param({"kind": "drop_connection", "times": None}, "challenges", 3, "RemoteProtocolError", id="dropped-for-good"),
    pytest.param({"kind": "slow", "times": None, "delay": 5.0}, "answers", 3, "ReadTimeout", id="timeout-for-good"),
    pytest.param({"kind": "truncated_json"}, "answers", 1, "not valid JSON", id="truncated-json"),
    pytest.param({"kind": "missing_rows", "times": None}, "answers", None, "incomplete", id="rows-missing-for-good"),
    pytest.param({"kind": "missing_key", "column": "question"}, "challenges", 1, "question", id="row-missing-a-column"),
]


@pytest.mark.parametrize(("fault", "table", "requests_at_offset", "reason"), FATAL)
def test_lasting_faults_raise_naming_supabase_the_table_and_the_skill(
    fake: PostgrestFake,
    dataset: Dataset,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    table: str,
    requests_at_offset: int | None,
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.max_rows = 100
    fake.inject(table=table, offset=100, **fault)
    store = make_store(fake, timeout_seconds=timeout_for(fault), max_attempts=3, page_size=100)

    with pytest.raises(SupabaseReadError) as caught:
        store.load_challenges(SKILL)

    message = str(caught.value)
    assert "Supabase" in message and SKILL in message and f"'{table}'" in message and reason in message
    assert (caught.value.table, caught.value.skill) == (table, SKILL)
    at_offset = [r for r in fake.requests_for(table) if r.position == 100]
    if requests_at_offset is not None:
        assert len(at_offset) == requests_at_offset  # 500, bad bodies: once; transient: max_attempts
    else:
        assert len(at_offset) == store.consistency_attempts  # the whole read was tried again, then given up
    rendered = "".join(traceback.format_exception(caught.value))
    assert fake.key not in rendered
    assert fake.key not in caplog.text


def test_a_wrong_key_is_a_clear_error_without_the_key(
    fake: PostgrestFake, dataset: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-supabase-key-9c2e"
    store = make_store(fake, key=wrong)

    with pytest.raises(SupabaseReadError) as caught:
        store.get_skill(SKILL)

    assert "Supabase" in str(caught.value) and "Invalid API key" in str(caught.value) and SKILL in str(caught.value)
    assert len(fake.requests) == 1  # a 401 is not retried
    for text in (str(caught.value), "".join(traceback.format_exception(caught.value)), caplog.text, repr(store)):
        assert wrong not in text and fake.key not in text
    (violation,) = fake.take_violations()
    assert "401" in violation and "Invalid API key" in violation


def test_a_server_ignoring_the_skill_filter_is_caught(
    fake: PostgrestFake, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a proxy or view that drops the embedded filter: rows of another skill come back.
    original = fake._filters
    monkeypatch.setattr(
        fake, "_filters", lambda table, items, args: [] if table == "answers" else original(table, items, args)
    )

    with pytest.raises(SupabaseReadError, match=r"Supabase returned answers of another skill .*'skill-python'"):
        make_store(fake).load_challenges(SKILL)


# -- the fake itself is strict (so the store's queries are checked against PostgREST's rules) ---------


def test_the_fake_rejects_what_postgrest_rejects(fake: PostgrestFake, dataset: Dataset) -> None:
    client = create_client(fake.url, fake.key, options=ClientOptions(postgrest_client_retry=False))

    with pytest.raises(APIError) as unknown_column:
        client.table("answers").select("id,user_name").execute()
    assert unknown_column.value.code == "42703" and "answers.user_name" in unknown_column.value.message

    with pytest.raises(APIError) as seed_filter:  # the seed's `.eq('answers.is_correct', undefined)`
        client.table("challenges").select("id,answers!inner(is_correct)").eq("answers.is_correct", "undefined").execute()
    assert seed_filter.value.code == "22P02"

    with pytest.raises(APIError) as operator:
        client.table("challenges").select("id").like("question", "%loop%").execute()
    assert operator.value.code == "PGRST100"

    with pytest.raises(APIError) as not_embedded:
        client.table("answers").select("id").eq("challenges.skill_id", SKILL).execute()
    assert not_embedded.value.code == "PGRST108"

    unordered = client.table("challenges").select("id").range(0, 9).execute()  # served, but a paging bug
    assert len(unordered.data) == 10

    violations = fake.take_violations()
    assert len(violations) == 5
    assert "without order" in violations[-1]

    # Embeds: one-to-many as arrays, many-to-one as objects, `!inner` dropping parents without a match.
    nested = client.table("challenges").select("id,answers(is_correct)").eq("id", dataset.challenges[0]["id"]).execute()
    assert isinstance(nested.data[0]["answers"], list) and nested.data[0]["answers"]
    parent = client.table("answers").select("id,challenges(skill_id)").eq("id", dataset.answers[0]["id"]).execute()
    assert parent.data[0]["challenges"] == {"skill_id": SKILL}
    inner = (
        client.table("skills").select("id,challenges!inner(id)", count="exact")
        .eq("challenges.difficulty", 10).order("id").execute()
    )
    assert [row["id"] for row in inner.data] == [SKILL, OTHER] and inner.count == 2


# -- inside Dagster --------------------------------------------------------------------------------


def test_the_code_location_reads_supabase_when_its_variables_are_set(
    fake: PostgrestFake, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from skill_pipeline.definitions import build_resources
    from skill_pipeline_tests.dagster_helpers import materialize_skill, metadata, tick

    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_KEY", fake.key)
    resources = build_resources()
    assert isinstance(resources["skill_store"], SupabaseSkillStore)
    assert fake.key not in repr(resources["skill_store"])

    with dg.instance_for_test() as instance:
        result = tick(instance, resources, None)  # a sensor context built without `with` must accept the resource
        assert sorted(instance.get_dynamic_partitions("skills")) == sorted([SKILL, OTHER])
        assert {r.partition_key for r in result.run_requests} == {SKILL, OTHER}

        from skill_pipeline.assets.promotion import gold_standard_candidates

        run = materialize_skill(instance, resources, SKILL, selection=[gold_standard_candidates.key])
        assert run.success
        assert metadata(run, "gold_standard_candidates")["challenges_read"] == 250
        assert metadata(run, "gold_standard_candidates")["answers_read"] == 520


def test_a_malformed_url_is_a_clear_error() -> None:
    store = SupabaseSkillStore(url="supabase.example.com", key="some-secret-key-123")

    with pytest.raises(SupabaseReadError, match="Supabase client for 'supabase.example.com' could not be created") as caught:
        store.list_skills()
    assert "some-secret-key-123" not in str(caught.value)
