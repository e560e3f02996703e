"""The app's tables in Supabase, read through PostgREST with the ``supabase`` SDK.

The SDK is imported when a session opens, not at module import: the code location loads without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import tenacity
from pydantic import Field, TypeAdapter, ValidationError

from skill_pipeline.models import Skill
from skill_pipeline.resources.redaction import redact
from skill_pipeline.resources.skill_store import CHALLENGE_COLUMNS, ChallengeData, SkillNotFound, SkillStore
from skill_pipeline.resources.supabase_rows import (
    ANSWER_ROWS,
    CHALLENGE_ROWS,
    SKILL_ROWS,
    SkillRow,
    SupabaseReadError,
    describe_read,
    answer_frame,
    challenge_frame,
    page_rows,
    validate_rows,
)

# Imports for this section live here so that the section can be read (and owned) on its own.


_log = logging.getLogger(__name__)

# Statuses worth another try: the gateway or PostgREST saying "not now" (PostgREST answers 503
# while its schema cache or pool is not ready; Cloudflare uses 520). A 500 is a database or
# PostgREST error that will come back the same, and a 4xx is our mistake: neither is retried.
TRANSIENT_STATUSES: frozenset[int] = frozenset({502, 503, 504, 520})

_SKILL_SELECT = "id,name,description,active,created_at"
_CHALLENGE_SELECT = ",".join(CHALLENGE_COLUMNS)
# ``id`` is read for ordering and de-duplication only; ``user_id`` is never requested. The embedded
# ``challenges!inner(skill_id)`` is what the skill filter applies to (see ``load_challenges``).
_ANSWER_SELECT = "id,challenge_id,is_correct,response_time,confidence,challenges!inner(skill_id)"


class _TransientStatus(Exception):
    """Raised from an httpx response hook so that a 502/503/504/520 can be retried by status.

    The SDK turns every non-2xx into ``APIError`` whose ``code`` is PostgREST's (``PGRST002``) or,
    for a non-JSON body, the status as text: the status itself is not reliably recoverable from it.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class _InconsistentRead(Exception):
    """The pages of one read do not add up (rows missing, repeated, or the total moved)."""


def _raise_on_transient_status(response: httpx.Response) -> None:
    if response.status_code in TRANSIENT_STATUSES:
        raise _TransientStatus(response.status_code, response.reason_phrase)


_RETRYABLE = (httpx.TransportError, _TransientStatus)


class SupabaseSkillStore(SkillStore):
    """The learning app's tables in Supabase, read through PostgREST with the ``supabase`` SDK.

    What the SDK leaves to us, and what this class does about it:

    * Hosted PostgREST returns at most ``max-rows`` (1000) rows per request, silently. Every table
      read is paged with ``.order("id")`` (a unique key: without an order, pages repeat and skip
      rows) and ``.range()``, with ``count="exact"``. The offset advances by the rows actually
      received, so a server cap below ``page_size`` still reads everything; the read ends when the
      Content-Range total is reached. Rows received must equal that total, ids must not repeat
      and the total must not move between pages; otherwise the whole read is done again (rows
      written while paging shift offsets), up to ``consistency_attempts`` times, then it fails.
    * A 200 whose body is cut short comes back as ``resp.data`` holding a string: every page is
      checked to be a JSON array of objects, and every row is validated (missing column -> error
      naming the row).
    * The SDK's own retry (503/520 and dropped connections, 1-2-4 s apart, hard-coded) is turned
      off and replaced by one bounded policy of ours (tenacity): transport errors including
      timeouts, which the SDK does not retry, and HTTP 502/503/504/520. A 500 and any 4xx are
      not retried.
    * ``ClientOptions(postgrest_client_timeout=0.5)`` becomes ``int(0.5) == 0`` in postgrest 2.34
      and every request fails. The store passes its own ``httpx.Client`` (``ClientOptions.httpx_client``,
      the route the SDK's deprecation warning points to) with ``httpx.Timeout(timeout_seconds)``,
      which keeps fractions, and a response hook that classifies transient statuses.

    The seed's candidate query is not reproduced: answers are not filtered on ``is_correct`` (every
    answer is read, correct or not), nothing is sent as ``undefined``, and nothing is limited
    without an order. Errors name Supabase, the table and the skill; the key never appears in
    them (``key`` is also hidden from the resource's repr).
    """

    url: str = Field(description="Supabase project URL, e.g. https://xyz.supabase.co (SUPABASE_URL)")
    key: str = Field(repr=False, description="Supabase API key (SUPABASE_KEY); never logged")
    page_size: int = Field(default=1000, ge=1, description="rows asked per request (hosted PostgREST caps at 1000)")
    timeout_seconds: float = Field(default=30, gt=0, description="connect/read timeout of one request, seconds")
    max_attempts: int = Field(
        default=4, ge=1, description="tries per request on transient failures (timeouts, 503, dropped connections)"
    )
    retry_backoff_seconds: float = Field(
        default=1.0, ge=0, description="first wait between tries; doubles each retry, capped at 30 s"
    )
    consistency_attempts: int = Field(default=3, ge=1, description="full re-reads of a table whose pages do not add up")

    @property
    def backend(self) -> str:
        return "supabase"

    # -- client ---------------------------------------------------------------------------------
    @contextmanager
    def _session(self) -> Iterator[Any]:
        """An SDK client for one public call, its connections closed at the end.

        Building one costs ~30 ms, nothing next to the reads. A client kept on the resource would
        need ``teardown_after_execution`` to be closed, and that hook makes Dagster treat the
        resource as a generator: ``build_sensor_context(resources=...)`` then refuses it outside a
        ``with`` block. A client per call also shares nothing between threads.
        """
        from supabase import ClientOptions, create_client

        http = httpx.Client(
            timeout=httpx.Timeout(self.timeout_seconds),
            http2=True,
            follow_redirects=True,
            event_hooks={"response": [_raise_on_transient_status]},
        )
        try:
            options = ClientOptions(
                httpx_client=http,
                postgrest_client_retry=False,
                auto_refresh_token=False,
                persist_session=False,
            )
            try:
                client = create_client(self.url, self.key, options=options)
            except Exception as exc:  # SupabaseException("Invalid URL"), ...
                raise SupabaseReadError(
                    f"Supabase client for {self.url!r} could not be created: {self._scrub(str(exc))}",
                    table=None, skill=None,
                ) from None
            yield client
        finally:
            http.close()

    def _scrub(self, text: str) -> str:
        return redact(text, self.key)

    # -- one request ----------------------------------------------------------------------------
    def _execute(self, client: Any, build: Callable[[Any], Any], table: str, skill: str | None) -> Any:
        """Run one PostgREST request with bounded retries; every failure becomes SupabaseReadError."""
        from postgrest.exceptions import APIError  # the SDK's; imported with it, when a read runs

        about = describe_read(table, skill)

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _log.warning(
                "Supabase read of %s failed (%s), attempt %d/%d; retrying in %.2f s",
                about, self._scrub(_describe(exc)), state.attempt_number, self.max_attempts,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.retry_backoff_seconds, max=30),
            retry=tenacity.retry_if_exception_type(_RETRYABLE),
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(lambda: build(client.table(table)).execute())
        except _RETRYABLE as exc:
            raise SupabaseReadError(
                f"Supabase read of {about} failed after {self.max_attempts} attempt(s): {self._scrub(_describe(exc))}",
                table=table, skill=skill,
            ) from None
        except APIError as exc:
            code = f" {exc.code}" if exc.code else ""
            hint = f"; hint: {exc.hint}" if exc.hint else ""
            raise SupabaseReadError(
                self._scrub(f"Supabase returned error{code} reading {about}: {exc.message}{hint}"),
                table=table, skill=skill,
            ) from None

    # -- paged read -----------------------------------------------------------------------------
    def _read_all(
        self, client: Any, table: str, columns: str, skill: str | None, filters: Callable[[Any], Any]
    ) -> list[dict[str, Any]]:
        """Every row of ``table`` matching ``filters``, ordered by id, verified against the count."""
        about = describe_read(table, skill)
        problem = ""
        for attempt in range(1, self.consistency_attempts + 1):
            try:
                return self._read_pages(client, table, columns, skill, filters)
            except _InconsistentRead as exc:
                problem = str(exc)
                _log.warning("Supabase read of %s did not add up (%s), read %d/%d", about, problem, attempt,
                             self.consistency_attempts)
        raise SupabaseReadError(
            f"Supabase read of {about} is incomplete: {problem} (after {self.consistency_attempts} full read(s))",
            table=table, skill=skill,
        )

    def _read_pages(
        self, client: Any, table: str, columns: str, skill: str | None, filters: Callable[[Any], Any]
    ) -> list[dict[str, Any]]:
        about = describe_read(table, skill)
        rows: list[dict[str, Any]] = []
        seen: set[Any] = set()
        total: int | None = None
        offset = 0
        while True:
            def page_query(query: Any, start: int = offset) -> Any:
                # Ordered on the primary key: without it PostgreSQL may order each page differently.
                return filters(query.select(columns, count="exact")).order("id").range(start, start + self.page_size - 1)

            response = self._execute(client, page_query, table, skill)
            page = page_rows(response.data, table, skill)
            if response.count is None:
                raise SupabaseReadError(
                    f"Supabase sent no row count (Content-Range total) for {about}: the read cannot be verified",
                    table=table, skill=skill,
                )
            if total is None:
                total = response.count
            elif response.count != total:
                raise _InconsistentRead(f"the row count moved from {total} to {response.count} while paging")
            for row in page:
                row_id = row.get("id")
                if row_id is None:
                    raise SupabaseReadError(
                        f"Supabase returned a row without 'id' for {about} (offset {offset})", table=table, skill=skill
                    )
                if row_id in seen:
                    raise _InconsistentRead(
                        f"row id {row_id!r} came back twice (a page lost rows, or rows moved while paging)"
                    )
                seen.add(row_id)
            rows.extend(page)
            offset += len(page)
            if not page or offset >= total:
                break
        if len(rows) != total:
            raise _InconsistentRead(f"received {len(rows)} rows but the Content-Range total is {total}")
        return rows

    # -- interface ------------------------------------------------------------------------------
    def list_skills(self, active_only: bool = True) -> list[Skill]:
        filters = (lambda q: q.eq("active", True)) if active_only else (lambda q: q)
        with self._session() as client:
            rows = self._read_all(client, "skills", _SKILL_SELECT, None, filters)
        valid = self._validated(SKILL_ROWS, rows, "skills", None)
        return [self._skill(row, describe_read("skills", None)) for row in valid]

    def get_skill(self, skill_id: str) -> Skill:
        about = describe_read("skills", skill_id)
        with self._session() as client:
            response = self._execute(client, lambda q: q.select(_SKILL_SELECT).eq("id", skill_id), "skills", skill_id)
        rows = self._validated(SKILL_ROWS, page_rows(response.data, "skills", skill_id), "skills", skill_id)
        if not rows:
            raise SkillNotFound(f"skill {skill_id!r} is not in Supabase table 'skills'")
        if len(rows) > 1 or rows[0].id != skill_id:
            raise SupabaseReadError(
                f"Supabase returned {len(rows)} row(s) for {about}, not exactly that skill", table="skills", skill=skill_id
            )
        return self._skill(rows[0], about)

    def load_challenges(self, skill_id: str) -> ChallengeData:
        """Every challenge of the skill and every answer to them (correct or not).

        Answers are read with one paged query filtered through the embedded parent,
        ``answers?select=...,challenges!inner(skill_id)&challenges.skill_id=eq.<id>&order=id``:
        PostgREST (>= 9; Supabase runs 12+) turns ``!inner`` plus the embedded filter into an
        inner join, and ``count=exact`` counts the joined top-level rows, so paging and the count
        check work as for a plain table. The alternative, ``challenge_id=in.(...)`` with the
        challenge ids, puts 2,500 UUIDs (~95 KB) in a URL, past what gateways accept, and would
        need batches of ids each paged on its own. The embedded ``skill_id`` of every row is checked.
        """
        with self._session() as client:
            challenge_rows = self._validated(
                CHALLENGE_ROWS,
                self._read_all(client, "challenges", _CHALLENGE_SELECT, skill_id, lambda q: q.eq("skill_id", skill_id)),
                "challenges", skill_id,
            )
            answer_rows = self._validated(
                ANSWER_ROWS,
                self._read_all(
                    client, "answers", _ANSWER_SELECT, skill_id, lambda q: q.eq("challenges.skill_id", skill_id)
                ),
                "answers", skill_id,
            )
        if foreign := [c.id for c in challenge_rows if c.skill_id != skill_id]:
            raise SupabaseReadError(
                f"Supabase returned challenges of another skill for table 'challenges' for skill {skill_id!r}: {foreign[:5]}",
                table="challenges", skill=skill_id,
            )
        if foreign := [a.id for a in answer_rows if a.challenges.skill_id != skill_id]:
            raise SupabaseReadError(
                f"Supabase returned answers of another skill for table 'answers' for skill {skill_id!r}: {foreign[:5]}",
                table="answers", skill=skill_id,
            )
        known = {c.id for c in challenge_rows}
        late = [a for a in answer_rows if a.challenge_id not in known]
        if late:
            # A challenge created between the two reads: its answers belong to the next run.
            _log.warning(
                "Supabase: %d answer(s) for skill %r belong to challenges created after the challenge read; "
                "left for the next run", len(late), skill_id,
            )
            answer_rows = [a for a in answer_rows if a.challenge_id in known]
        return ChallengeData(challenges=challenge_frame(challenge_rows), answers=answer_frame(answer_rows))

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _validated(adapter: TypeAdapter, rows: list[dict[str, Any]], table: str, skill: str | None) -> list:
        try:
            return validate_rows(adapter, rows, f"Supabase {describe_read(table, skill)}")
        except ValueError as exc:
            raise SupabaseReadError(str(exc), table=table, skill=skill) from None

    @staticmethod
    def _skill(row: SkillRow, about: str) -> Skill:
        try:
            return Skill(
                id=row.id, name=row.name, description=row.description or "", active=row.active,
                created_at=row.created_at,
            )
        except ValidationError as exc:
            raise SupabaseReadError(
                f"Supabase {about}: skill {row.id!r} is invalid: {exc.errors()[0]['msg']}", table="skills", skill=row.id
            ) from None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    if isinstance(exc, _TransientStatus):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__




