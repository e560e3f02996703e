"""The Supabase store's two read paths through the real SDK: the SQL function (RPC) and keyset pages.

Identical frames whatever the path (and equal to the embedded SQLite store's), the function used
when installed and detected once when not, its arguments as strict PostgREST checks them, and the
answers held as typed columns with shared strings (not an object per answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from skill_pipeline.core.promotion import score_candidates
from skill_pipeline.models import GoldStandardCriteria
from skill_pipeline.resources.skill_store import user_key
from skill_pipeline.resources.supabase_rows import SupabaseReadError
from skill_pipeline_tests.fakes.postgrest_rpc import READ_FUNCTION, install_read_function
from skill_pipeline_tests.fakes.postgrest_server import PostgrestFake, serve_postgrest
from skill_pipeline_tests.test_supabase_store import SKILL, Dataset, make_store


@pytest.fixture
def fake() -> Iterator[PostgrestFake]:
    with serve_postgrest() as server:
        yield server


@pytest.fixture
def dataset(fake: PostgrestFake) -> Dataset:
    data = Dataset(1_234, 4_321)
    data.load(fake)
    return data


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_rpc_keyset_and_sqlite_give_identical_frames_and_candidates(
    fake: PostgrestFake, dataset: Dataset, tmp_path: Path
) -> None:
    keyset = make_store(fake, read_path="keyset").load_challenges(SKILL)
    function = install_read_function(fake)
    before = len(fake.requests)
    rpc = make_store(fake, rpc_page_size=500).load_challenges(SKILL)
    local = dataset.load_sqlite(tmp_path / "app.db").load_challenges(SKILL)

    assert (keyset.read_path, rpc.read_path, local.read_path) == ("keyset", "rpc", "sqlite")
    for other in (rpc, local):
        pd.testing.assert_frame_equal(keyset.challenges, other.challenges)
        pd.testing.assert_frame_equal(ordered(keyset.answers), ordered(other.answers))
    judge = {cid: 0.8 for cid in keyset.challenges["id"]}
    criteria = GoldStandardCriteria(min_answers=2)
    frames = [score_candidates(d.challenges, d.answers, judge, criteria) for d in (keyset, rpc, local)]
    for frame, summary in frames[1:]:
        pd.testing.assert_frame_equal(frames[0][0], frame)
        assert frames[0][1] == summary

    # One request per page of challenges (plus the challenge count), not one per 1,000 answers.
    calls = fake.requests[before:]
    assert [(r.method, r.table) for r in calls] == [("POST", READ_FUNCTION), ("GET", "challenges"),
                                                     ("POST", READ_FUNCTION), ("POST", READ_FUNCTION)]
    assert [c["p_after"] for c in function.calls] == [None, "ch-00499", "ch-00999"]
    assert all(c == {"p_skill_id": SKILL, "p_after": c["p_after"], "p_limit": 500} for c in function.calls)
    assert calls[1].headers["prefer"] == "count=exact"


def test_a_missing_function_is_detected_once_then_keyset_pages_are_read(
    fake: PostgrestFake, dataset: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = make_store(fake)

    first = store.load_challenges(SKILL)
    second = store.load_challenges(SKILL)

    assert first.read_path == second.read_path == "keyset"
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].status == 404  # PGRST202 once; the resource remembers
    assert "'skill_pipeline_read' is not installed (PGRST202)" in caplog.text
    pd.testing.assert_frame_equal(first.answers, second.answers)


def test_forcing_the_function_when_it_is_missing_fails_clearly(fake: PostgrestFake, dataset: Dataset) -> None:
    with pytest.raises(SupabaseReadError, match=r"PGRST202.*function 'skill_pipeline_read' for skill 'skill-python'"):
        make_store(fake, read_path="rpc").load_challenges(SKILL)


def test_a_server_capping_the_function_below_the_page_still_reads_every_challenge(
    fake: PostgrestFake, dataset: Dataset
) -> None:
    install_read_function(fake)
    fake.max_rows = 300  # a self-hosted PostgREST with a lower max-rows than rpc_page_size

    data = make_store(fake, rpc_page_size=1000).load_challenges(SKILL)

    assert data.read_path == "rpc"
    assert list(data.challenges["id"]) == sorted(c["id"] for c in dataset.challenges)
    assert len(data.answers) == len(dataset.answers)


def test_packed_arrays_that_do_not_line_up_are_an_error(fake: PostgrestFake, dataset: Dataset) -> None:
    function = install_read_function(fake)
    body = function.body

    def broken(server, args):  # type: ignore[no-untyped-def]
        rows = body(server, args)
        rows[3]["confidence"] = rows[3]["confidence"][:-1]
        return rows

    function.body = broken
    with pytest.raises(SupabaseReadError, match=r"row 3 \(id 'ch-00003'\).*do not match answer_count"):
        make_store(fake).load_challenges(SKILL)


def test_the_fake_function_checks_its_arguments_like_postgrest(fake: PostgrestFake, dataset: Dataset) -> None:
    install_read_function(fake)
    client = create_client(fake.url, fake.key, options=ClientOptions(postgrest_client_retry=False))

    with pytest.raises(APIError) as unknown:
        client.rpc(READ_FUNCTION, {"p_skill_id": SKILL, "p_offset": 10}).execute()
    assert unknown.value.code == "PGRST202"
    assert "public.skill_pipeline_read(p_after, p_limit, p_skill_id)" in unknown.value.hint

    with pytest.raises(APIError) as missing:
        client.rpc(READ_FUNCTION, {"p_after": None}).execute()
    assert missing.value.code == "PGRST202"

    with pytest.raises(APIError) as not_installed:
        client.rpc("skill_pipeline_write", {"p_skill_id": SKILL}).execute()
    assert not_installed.value.code == "PGRST202" and not_installed.value.hint is None

    with pytest.raises(APIError) as wrong_type:
        client.rpc(READ_FUNCTION, {"p_skill_id": SKILL, "p_limit": "ten"}).execute()
    assert wrong_type.value.code == "22P02"
    (violation,) = fake.take_violations()
    assert "22P02" in violation

    rows = client.rpc(READ_FUNCTION, {"p_skill_id": SKILL, "p_limit": 2}).execute().data
    assert [r["id"] for r in rows] == ["ch-00000", "ch-00001"]
    assert rows[0]["user_key"] == [
        user_key(SKILL, a["user_id"]) for a in sorted(dataset.answers, key=lambda a: a["id"])
        if a["challenge_id"] == "ch-00000"
    ]


def test_answer_strings_are_shared_not_one_object_per_answer(fake: PostgrestFake, dataset: Dataset) -> None:
    for store in (make_store(fake, read_path="keyset"), make_store(fake)):
        answers = store.load_challenges(SKILL).answers
        for name in ("challenge_id", "user_key"):
            values = answers[name].to_numpy(dtype=object)
            assert len({id(v) for v in values}) == answers[name].nunique(), name
        assert answers["is_correct"].dtype == bool
        assert answers["response_time"].dtype == answers["confidence"].dtype == "float64"
        install_read_function(fake)


# -- least privilege: the read-only role of supabase/read_only_role.sql ------------------------------
ROLE_SQL = Path(__file__).resolve().parent.parent / "supabase" / "read_only_role.sql"


def shipped_role_grants() -> tuple[str, dict[str, set[str]], set[str]]:
    """The role, its column grants and its functions, as supabase/read_only_role.sql writes them."""
    import re

    sql = re.sub(r"--[^\n]*", "", ROLE_SQL.read_text())
    role = re.search(r"create role (\w+)", sql)[1]
    columns = {table: {c.strip() for c in cols.split(",")}
               for cols, table in re.findall(rf"grant select \(([^)]*)\)\s+on public\.(\w+) to {role};", sql)}
    functions = set(re.findall(rf"grant execute on function public\.(\w+)\([^)]*\) to {role};", sql))
    return role, columns, functions


@pytest.mark.parametrize("read_path", ["rpc", "keyset"])
def test_the_shipped_read_only_role_reads_everything_the_pipeline_needs(
    fake: PostgrestFake, dataset: Dataset, read_path: str
) -> None:
    install_read_function(fake)
    role, columns, functions = shipped_role_grants()
    assert set(columns) == {"skills", "challenges", "answers"} and functions == {READ_FUNCTION}
    token = fake.roles.add(role, columns, functions)
    as_role = make_store(fake, access_token=token, read_path=read_path, answer_streams=3)
    as_key = make_store(fake, read_path=read_path)

    assert as_role.list_skills() == as_key.list_skills()
    theirs, ours = as_key.load_challenges(SKILL), as_role.load_challenges(SKILL)
    assert ours.read_path == read_path
    pd.testing.assert_frame_equal(ordered(ours.answers), ordered(theirs.answers))
    pd.testing.assert_frame_equal(ours.challenges, theirs.challenges)
    as_role_requests = [r for r in fake.requests if r.role == role]
    assert as_role_requests and all(r.headers["apikey"] == "<right key>" for r in as_role_requests)
    assert all(r.headers["authorization"] == f"<bearer role {role}>" for r in as_role_requests)


@pytest.mark.parametrize("read_path", ["rpc", "keyset"])
def test_a_role_missing_a_grant_fails_naming_supabase_and_the_refusal_without_the_token(
    fake: PostgrestFake, dataset: Dataset, read_path: str
) -> None:
    install_read_function(fake)
    role, columns, functions = shipped_role_grants()
    columns["answers"].discard("user_id")  # pseudonymised in the pipeline's process: needs the column
    token = fake.roles.add(role, columns, functions)
    with pytest.raises(SupabaseReadError) as caught:
        make_store(fake, access_token=token, read_path=read_path, max_attempts=1).load_challenges(SKILL)
    message = str(caught.value)
    assert "Supabase" in message and "permission denied for table answers" in message and SKILL in message
    assert token not in message and fake.key not in message
    (refused,) = fake.take_violations()  # refused, not fallen back to the other path
    assert ("/rpc/" in refused) == (read_path == "rpc") and "403" in refused and "42501" in refused
    # A forged token is refused as PostgREST refuses a bad signature.
    with pytest.raises(SupabaseReadError, match="JWSInvalidSignature|PGRST301"):
        make_store(fake, access_token="jwt-forged", max_attempts=1).list_skills()
    (forged,) = fake.take_violations()
    assert "401" in forged and "PGRST301" in forged
