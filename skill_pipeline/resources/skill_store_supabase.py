"""The app's tables in Supabase, read through PostgREST with the ``supabase`` SDK.

Two read paths for a skill's challenges and answers: the SQL function shipped in
``supabase/migrations`` (``skill_pipeline_read``: one request per page of challenges, answers packed
as arrays, user keys pseudonymised in SQL) when it is installed, and keyset pages of the tables
otherwise. ``ChallengeData.read_path`` says which one a read took. The SDK is imported when a
session opens, not at module import: the code location loads without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

import httpx
import tenacity
import pandas as pd
from pydantic import Field, PrivateAttr, TypeAdapter, ValidationError

from skill_pipeline.models import Skill
from skill_pipeline.resources.redaction import redact
from skill_pipeline.resources.skill_store import CHALLENGE_COLUMNS, ChallengeData, SkillNotFound, SkillStore
from skill_pipeline.resources.skill_store_supabase_rpc import read_rpc
from skill_pipeline.resources.skill_store_supabase_reads import (
    ANSWER_SELECT,
    AnswerColumns,
    ForeignRows,
    InconsistentRead,
)
from skill_pipeline.resources.supabase_rows import (
    CHALLENGE_ROWS,
    SKILL_ROWS,
    SkillRow,
    SupabaseReadError,
    challenge_frame,
    describe_read,
    page_rows,
    validate_rows,
)

_log = logging.getLogger(__name__)

# Statuses worth another try: the gateway or PostgREST saying "not now" (PostgREST answers 503
# while its schema cache or pool is not ready; Cloudflare uses 520). A 500 is a database or
# PostgREST error that will come back the same, and a 4xx is our mistake: neither is retried.
TRANSIENT_STATUSES: frozenset[int] = frozenset({502, 503, 504, 520})

_SKILL_SELECT = "id,name,description,active,created_at"
_CHALLENGE_SELECT = ",".join(CHALLENGE_COLUMNS)


class _TransientStatus(Exception):
    """Raised from an httpx response hook so that a 502/503/504/520 can be retried by status.

    The SDK turns every non-2xx into ``APIError`` whose ``code`` is PostgREST's (``PGRST002``) or,
    for a non-JSON body, the status as text: the status itself is not reliably recoverable from it.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


def _raise_on_transient_status(response: httpx.Response) -> None:
    if response.status_code in TRANSIENT_STATUSES:
        raise _TransientStatus(response.status_code, response.reason_phrase)


_RETRYABLE = (httpx.TransportError, _TransientStatus)


class SupabaseSkillStore(SkillStore):
    """The learning app's tables in Supabase, read through PostgREST with the ``supabase`` SDK.

    What the SDK leaves to us, and what this class does about it:

    * Hosted PostgREST returns at most ``max-rows`` (1000) rows per request, silently. Tables are
      read in keyset pages: ``id > <last id>`` ordered by ``id`` (a unique key), so a page costs the
      same at the millionth row as at the first (an ``OFFSET`` page at 999k cost 2.9 s on
      PostgreSQL 15), and rows written while paging neither shift nor repeat the others.
      ``count=exact`` is asked once, on the first page. A page shorter than asked ends the read
      only once that count is reached (a server cap below ``page_size`` still reads everything).
      Fewer rows than the count, an id seen twice, or a page repeating the cursor make the whole
      read start again, up to ``consistency_attempts`` times, then it fails. More rows than the
      count are answers written during the read: they are kept.
    * The SQL function of ``supabase/migrations`` (``rpc_function``) returns a page of challenges
      with their answers packed per challenge: one request per ``rpc_page_size`` challenges, not
      per 1,000 answers. It is used when installed (``read_path="auto"``): PostgREST's PGRST202
      ("function not found") is detected once per resource and the keyset path taken instead. The
      challenge count (one request) checks that no page of challenges was lost.
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
    key: str = Field(repr=False, description="Supabase API key (SUPABASE_KEY), sent as `apikey`; never logged")
    access_token: str | None = Field(
        default=None, repr=False,
        description="SUPABASE_ACCESS_TOKEN: a JWT whose `role` claim is the read-only role of supabase/README.md, "
        "sent as the bearer token while `key` (the project's anon/publishable key) is the `apikey`, so the "
        "pipeline needs no service key; unset: `key` is both; never logged",
    )
    page_size: int = Field(default=1000, ge=1, description="rows asked per request (hosted PostgREST caps at 1000)")
    timeout_seconds: float = Field(default=30, gt=0, description="connect/read timeout of one request, seconds")
    max_attempts: int = Field(
        default=4, ge=1, description="tries per request on transient failures (timeouts, 503, dropped connections)"
    )
    retry_backoff_seconds: float = Field(
        default=1.0, ge=0, description="first wait between tries; doubles each retry, capped at 30 s"
    )
    consistency_attempts: int = Field(default=3, ge=1, description="full re-reads of a table whose pages do not add up")
    read_path: Literal["auto", "rpc", "keyset"] = Field(
        default="auto",
        description="auto: the SQL function when installed, else keyset pages; rpc: the function or fail; keyset",
    )
    rpc_function: str = Field(
        default="skill_pipeline_read", description="SQL function of supabase/migrations (SECURITY INVOKER, STABLE)"
    )
    rpc_page_size: int = Field(
        default=100, ge=1, le=1000, description="challenges per call of the SQL function (answers come packed with them)"
    )
    answer_streams: int = Field(
        default=4, ge=1, le=16,
        description="keyset path: answers read as this many concurrent keyset reads over contiguous ranges of the "
        "skill's challenge ids (each its own count and checks); 1 reads them in one sequence of pages",
    )

    _rpc_missing: bool = PrivateAttr(default=False)

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
            # The SDK keeps an Authorization header given in the options and sends `key` as apikey.
            headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
            options = ClientOptions(
                headers={**ClientOptions().headers, **headers},
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
        return redact(text, self.key, self.access_token)

    # -- one request ----------------------------------------------------------------------------
    def _execute(self, client: Any, build: Callable[[Any], Any], table: str, skill: str | None) -> Any:
        """One request on ``table``: ``build`` gets ``client.table(table)`` and returns the query."""
        return self._request(lambda: build(client.table(table)).execute(), table, skill)

    def _request(self, send: Callable[[], Any], table: str, skill: str | None) -> Any:
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
            return retrying(send)
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
                table=table, skill=skill, code=exc.code,
            ) from None

    # -- keyset read ----------------------------------------------------------------------------
    def _read_all(
        self, client: Any, table: str, columns: str, skill: str | None, filters: Callable[[Any], Any],
        sink: Callable[[], Any] = list,
    ) -> Any:
        """Every row of ``table`` matching ``filters``, in keyset pages, handed to a fresh ``sink()``
        per attempt (a list of row dicts, or ``AnswerColumns``); verified against the count."""
        about = describe_read(table, skill)
        problem = ""
        for attempt in range(1, self.consistency_attempts + 1):
            received = sink()
            try:
                self._read_pages(client, table, columns, skill, filters, received)
                return received
            except InconsistentRead as exc:
                problem = str(exc)
                _log.warning("Supabase read of %s did not add up (%s), read %d/%d", about, problem, attempt,
                             self.consistency_attempts)
        raise SupabaseReadError(
            f"Supabase read of {about} is incomplete: {problem} (after {self.consistency_attempts} full read(s))",
            table=table, skill=skill,
        )

    def _read_pages(
        self, client: Any, table: str, columns: str, skill: str | None, filters: Callable[[Any], Any], sink: Any
    ) -> None:
        about = describe_read(table, skill)
        what = f"Supabase {about}"
        total: int | None = None
        received = 0
        last: str | None = None
        seen: set[str] = set()
        while True:
            def page_query(query: Any, after: str | None = last, first: bool = total is None) -> Any:
                query = filters(query.select(columns, count="exact") if first else query.select(columns))
                if after is not None:
                    query = query.gt("id", after)
                return query.order("id").limit(self.page_size)

            response = self._execute(client, page_query, table, skill)
            page = page_rows(response.data, table, skill)
            if total is None:
                if response.count is None:
                    raise SupabaseReadError(
                        f"Supabase sent no row count (Content-Range total) for {about}: the read cannot be verified",
                        table=table, skill=skill,
                    )
                total = response.count
            try:
                if isinstance(sink, AnswerColumns):
                    ids = sink.add_rows(page, what)
                else:
                    ids = [str(row["id"]) if "id" in row else _missing_id(about, received) for row in page]
                    if repeated := seen.intersection(ids):
                        raise InconsistentRead(f"row id {sorted(repeated)[0]!r} came back twice")
                    seen.update(ids)
                    sink.extend(page)
            except ValueError as exc:
                raise SupabaseReadError(str(exc), table=table, skill=skill) from None
            except ForeignRows as exc:
                raise SupabaseReadError(
                    f"Supabase returned answers of another skill for {about}: {exc.ids[:5]}", table=table, skill=skill
                ) from None
            if last is not None and last in ids:
                raise InconsistentRead(f"the page after id {last!r} repeated it (the server ignored id=gt.)")
            received += len(page)
            if not page or (len(page) < self.page_size and received >= total):
                break
            last = ids[-1]
        if isinstance(sink, AnswerColumns) and sink.repeated_ids():
            raise InconsistentRead("an answer id came back twice (the server ignored the order or the cursor)")
        if received < total:
            raise InconsistentRead(f"received {received} rows but the exact count at the first page was {total}")
        if received > total:
            _log.info("Supabase: %d row(s) of %s were written during the read and are included", received - total, about)

    def _read_answer_streams(self, client: Any, skill_id: str, challenge_ids: list[str]) -> AnswerColumns:
        """The skill's answers as ``answer_streams`` keyset reads at once, one per contiguous range of
        challenge ids (``challenge_id=gte.<first>&challenge_id=lt.<next range's first>``; the first
        range open below, the last open above, so an answer of a challenge created meanwhile is still
        read and then left for the next run as before).

        Why: each page's cursor is the previous page's last id, so one keyset read is a chain of
        round trips: at 50 ms a request 10⁶ answers wait 50 s on latency alone. Ranges of challenge
        ids are disjoint sets of answers, each ordered by id, so their reads need no coordination and
        overlap their waits; PostgreSQL serves each from the ``challenge_id`` index. The cuts are
        taken from ``challenge_ids`` in the order the database returned them (``order=id.asc``), so
        the ranges follow the column's own collation, whatever Python's string order says.
        """
        streams = max(1, min(self.answer_streams, len(challenge_ids)))
        cuts = [challenge_ids[len(challenge_ids) * k // streams] for k in range(1, streams)]
        bounds = list(zip([None, *cuts], [*cuts, None]))
        strings = AnswerColumns(skill_id)  # one string table for every part (see AnswerColumns.joined)

        def read(bound: tuple[str | None, str | None]) -> AnswerColumns:
            low, high = bound

            def filters(query: Any) -> Any:
                query = query.eq("challenges.skill_id", skill_id)
                query = query.gte("challenge_id", low) if low is not None else query
                return query.lt("challenge_id", high) if high is not None else query

            return self._read_all(client, "answers", ANSWER_SELECT, skill_id, filters,
                                  sink=lambda: AnswerColumns(skill_id, shared_with=strings))

        if streams == 1:
            return read(bounds[0])
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="supabase-answers") as pool:
            parts = list(pool.map(read, bounds))
        return AnswerColumns.joined(skill_id, parts)

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

        The SQL function when installed (``read_path``), else keyset pages of both tables. Answers
        are read with one keyset query filtered through the embedded parent,
        ``answers?select=...,challenges!inner(skill_id)&challenges.skill_id=eq.<id>&id=gt.<last>&order=id.asc``:
        PostgREST (>= 9; Supabase runs 12+) turns ``!inner`` plus the embedded filter into an
        inner join, and ``count=exact`` counts the joined top-level rows. The alternative,
        ``challenge_id=in.(...)``, puts 2,500 UUIDs (~95 KB) in a URL, past what gateways accept.
        The embedded ``skill_id`` of every row is checked. Answer row order is not part of the
        contract (the function returns them grouped by challenge).
        """
        with self._session() as client:
            packed = None
            if self.read_path != "keyset" and not self._rpc_missing:
                packed = read_rpc(self, client, skill_id)
                if packed is None:
                    self._rpc_missing = True
                    _log.info("Supabase: function %r is not installed (PGRST202); reading keyset pages of the "
                              "tables (see supabase/README.md)", self.rpc_function)
            if packed is not None:
                challenge_rows, answers = packed
                path = "rpc"
            else:
                path = "keyset"
                challenge_rows = self._validated(
                    CHALLENGE_ROWS,
                    self._read_all(client, "challenges", _CHALLENGE_SELECT, skill_id, lambda q: q.eq("skill_id", skill_id)),
                    "challenges", skill_id,
                )
                answers = self._read_answer_streams(client, skill_id, [c.id for c in challenge_rows])
        if foreign := [c.id for c in challenge_rows if c.skill_id != skill_id]:
            raise SupabaseReadError(
                f"Supabase returned challenges of another skill for table 'challenges' for skill {skill_id!r}: {foreign[:5]}",
                table="challenges", skill=skill_id,
            )
        # pandas' hash-table isin: numpy's isin sorts object arrays (≈7 µs an answer, most of the read's CPU).
        late = ~pd.Series(answers.challenge_ids(), dtype=object).isin({c.id for c in challenge_rows}).to_numpy()
        if late.any():
            # A challenge created between the two reads: its answers belong to the next run.
            _log.warning(
                "Supabase: %d answer(s) for skill %r belong to challenges created after the challenge read; "
                "left for the next run", int(late.sum()), skill_id,
            )
            answers.keep(~late)
        return ChallengeData(challenges=challenge_frame(challenge_rows), answers=answers.frame(), read_path=path)

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


def _missing_id(about: str, position: int) -> str:
    raise ValueError(f"Supabase returned a row without 'id' for {about} (after {position} rows)")
