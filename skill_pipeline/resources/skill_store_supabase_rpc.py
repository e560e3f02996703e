"""The SQL function path of ``SupabaseSkillStore``: ``supabase/migrations/*_skill_pipeline_read.sql``.

One call returns a page of the skill's challenges (keyset on the challenge id: ``p_after``,
``p_limit``) with their answers packed per challenge as arrays, user keys pseudonymised in SQL, so a
skill costs one request per ``rpc_page_size`` challenges instead of one per 1,000 answers. When the
function is not installed PostgREST answers 404 ``PGRST202`` on the first call: ``read_rpc`` then
returns None and the store reads keyset pages. The challenge count (one request, after the first
page) checks that no page was lost or cut short by a server ``max-rows`` below ``p_limit``: short
pages do not end the read before the count is reached.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from skill_pipeline.resources.skill_store_supabase_reads import AnswerColumns
from skill_pipeline.resources.supabase_rows import (
    CHALLENGE_ROWS,
    ChallengeRow,
    SupabaseReadError,
    describe_read,
    page_rows,
)

if TYPE_CHECKING:
    from skill_pipeline.resources.skill_store_supabase import SupabaseSkillStore

_log = logging.getLogger("skill_pipeline.resources.skill_store_supabase")

# PostgREST's answer when the function is not in its schema cache (not installed, or another
# signature); 42883 is PostgreSQL's own "function does not exist", seen through older PostgREST.
FUNCTION_NOT_FOUND = frozenset({"PGRST202", "42883"})


def read_rpc(
    store: SupabaseSkillStore, client: Any, skill_id: str
) -> tuple[list[ChallengeRow], AnswerColumns] | None:
    """The skill through ``rpc_function``, a page of challenges a call; None when not installed."""
    table = f"rpc/{store.rpc_function}"
    what = f"Supabase {describe_read(table, skill_id)}"
    for attempt in range(1, store.consistency_attempts + 1):
        challenges: list[ChallengeRow] = []
        answers = AnswerColumns(skill_id)
        after: str | None = None
        total: int | None = None
        while True:
            params = {"p_skill_id": skill_id, "p_after": after, "p_limit": store.rpc_page_size}
            try:
                response = store._request(lambda p=params: client.rpc(store.rpc_function, p).execute(), table, skill_id)
            except SupabaseReadError as exc:
                if exc.code in FUNCTION_NOT_FOUND and store.read_path == "auto" and after is None:
                    return None  # detected on the first call: one request, then the keyset path
                raise
            page = page_rows(response.data, table, skill_id)
            rows = store._validated(CHALLENGE_ROWS, page, table, skill_id)
            try:
                answers.add_packed(page, what)
            except ValueError as exc:
                raise SupabaseReadError(str(exc), table=table, skill=skill_id) from None
            if after is not None and rows and rows[0].id <= after:
                raise SupabaseReadError(f"{what}: challenges are not in id order after {after!r}", table=table,
                                        skill=skill_id)
            challenges.extend(rows)
            if total is None:
                total = _count_challenges(store, client, skill_id)
            if not rows or (len(rows) < store.rpc_page_size and len(challenges) >= total):
                break
            after = rows[-1].id
        if len(challenges) >= total:
            return challenges, answers
        _log.warning("Supabase read of %s did not add up (%d challenges, count %d), read %d/%d", what,
                     len(challenges), total, attempt, store.consistency_attempts)
    raise SupabaseReadError(
        f"{what} is incomplete: fewer challenges than the count (after {store.consistency_attempts} full read(s))",
        table=table, skill=skill_id,
    )

def _count_challenges(store: SupabaseSkillStore, client: Any, skill_id: str) -> int:
    """The skill's challenge count (one request), against which the function's pages are checked."""
    counted = store._execute(
        client, lambda q: q.select("id", count="exact").eq("skill_id", skill_id).order("id").limit(1),
        "challenges", skill_id,
    )
    if counted.count is None:
        raise SupabaseReadError(f"Supabase sent no row count for {describe_read('challenges', skill_id)}",
                                table="challenges", skill=skill_id)
    return counted.count
