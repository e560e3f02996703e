"""A strict loopback PostgREST for the app's ``skills``, ``challenges`` and ``answers`` tables.

What the ``supabase`` 2.34.1 SDK really sends, logged from the store's own queries (and served here):

    GET /rest/v1/skills?select=id%2Cname%2Cdescription%2Cactive%2Ccreated_at&active=eq.true
        &order=id.asc&offset=0&limit=1000
    GET /rest/v1/answers?select=id%2Cchallenge_id%2Cis_correct%2Cresponse_time%2Cconfidence
        %2Cchallenges%21inner%28skill_id%29&challenges.skill_id=eq.<skill>&order=id.asc&offset=1000&limit=1000
    GET /rest/v1/challenges?select=id&id=in.%28a%2C%22b%2Cc%22%29      (``.in_`` quotes values with , : ( ) ")
    headers: apiKey: <key>, Authorization: Bearer <key>, Accept-Profile: public, Content-Profile: public,
             Prefer: count=exact (only with ``count=``), Accept: */*, X-Client-Info: supabase-py/2.34.1; ...

``.range(a, b)`` becomes ``offset=a&limit=b-a+1``; ``.order("id")`` becomes ``order=id.asc``. Responses
follow PostgREST: a JSON array, ``Content-Range: <first>-<last>/<total|*>`` (``*/<total>`` for an empty
page), 206 when the page is not the whole result and a count was asked, 416 past the end, at most
``max_rows`` rows per response whatever the client asks (hosted Supabase: 1000), many-to-one embeds as
objects and one-to-many embeds as arrays, ``!inner`` dropping parents whose embed is empty.

Strict: an unknown table, column, relationship or operator, a bad value for a column's type, a wrong
key, a write, or a paged read without ``order`` is answered the way PostgREST would (or 400 PGRST100 for
what this fake does not implement) and recorded in ``violations``; the ``postgrest_fake`` fixture fails
the test at teardown if any violation was not taken with ``take_violations()``. Injected faults (``inject``)
are not violations.

Text is compared bytewise (PostgreSQL's ``C`` collation); ids should sort the same under any collation.
"""

from __future__ import annotations

import bisect
import json
import re
import socket
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from skill_pipeline_tests.fakes.postgrest_roles import Role, Roles
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ColumnType = Literal["text", "int", "float", "bool", "jsonb", "timestamptz"]


@dataclass(frozen=True)
class Column:
    type: ColumnType
    nullable: bool = False


SCHEMA: dict[str, dict[str, Column]] = {
    "skills": {
        "id": Column("text"),
        "name": Column("text"),
        "description": Column("text", nullable=True),
        "active": Column("bool"),
        "created_at": Column("timestamptz"),
    },
    "challenges": {
        "id": Column("text"),
        "skill_id": Column("text"),
        "difficulty": Column("int"),
        "question": Column("text"),
        "options_json": Column("jsonb"),
        "correct_option": Column("int"),
        "explanation": Column("text", nullable=True),
        "created_at": Column("timestamptz"),
    },
    "answers": {
        "id": Column("text"),
        "challenge_id": Column("text"),
        "user_id": Column("text"),
        "is_correct": Column("bool"),
        "response_time": Column("int", nullable=True),
        "confidence": Column("int", nullable=True),
        "created_at": Column("timestamptz"),
    },
}

# (table, column) -> (referenced table, referenced column). Every table's primary key is ``id``.
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("challenges", "skill_id"): ("skills", "id"),
    ("answers", "challenge_id"): ("challenges", "id"),
}

FaultKind = Literal[
    "status_500",  # PostgREST/database error: the SDK does not retry it
    "status_503",  # PostgREST's "schema cache not ready": transient
    "drop_connection",  # the socket is closed before any response
    "slow",  # the response comes after ``delay`` seconds (a client timeout fires first)
    "truncated_json",  # 200 with the body cut in half (Content-Length matches the cut body)
    "missing_rows",  # the page silently lacks some rows; Content-Range total unchanged
    "missing_key",  # every row of the page lacks the ``column`` key
]

RESERVED_PARAMS = {"select", "order", "offset", "limit", "columns", "on_conflict"}
SUPPORTED_OPERATORS = {"eq", "in", "is", "gt", "gte", "lt", "lte"}
KNOWN_OPERATORS = {
    "eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch", "in", "is", "isdistinct",
    "fts", "plfts", "phfts", "wfts", "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "not", "or", "and",
}


class PostgrestError(Exception):
    """A PostgREST error response: status and the JSON body PostgREST would send."""

    def __init__(self, status: int, code: str | None, message: str, *, details: Any = None, hint: Any = None,
                 violation: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "details": details, "hint": hint, "message": message}
        if code is None:  # the API gateway's errors carry only message and hint
            self.body = {"message": message, "hint": hint}
        self.violation = violation


@dataclass
class Fault:
    kind: FaultKind
    table: str | None = None
    offset: int | None = None
    times: int | None = 1  # None: every matching request
    delay: float = 2.0
    column: str = "question"
    served: int = 0

    def matches(self, table: str, offset: int) -> bool:
        if self.times is not None and self.served >= self.times:
            return False
        return (self.table is None or self.table == table) and (self.offset is None or self.offset == offset)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str  # decoded query string, as PostgREST reads it
    params: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names; apikey/authorization replaced by whether they were right
    status: int = 0
    fault: str | None = None
    # Where the page starts among the rows matching every filter but the keyset cursor (``id=gt.``):
    # the offset of an offset page, the rows before the cursor of a keyset page. Faults match on it.
    position: int = 0
    body: Any = None  # the JSON arguments of an RPC call
    role: str | None = None  # the database role of a bearer token; None: the project key

    @property
    def table(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


# -- select parsing --------------------------------------------------------------------------------


@dataclass
class SelectItem:
    name: str  # column or relationship
    alias: str | None = None
    embed: list[SelectItem] | None = None  # None: a column
    inner: bool = False

    @property
    def key(self) -> str:
        return self.alias or self.name


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, current, quoted = [], 0, [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise PostgrestError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
        if char == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0 or quoted:
        raise PostgrestError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
    parts.append("".join(current))
    return parts


_ITEM = re.compile(r"^(?:(?P<alias>[A-Za-z_][A-Za-z0-9_]*):)?(?P<name>\*|[A-Za-z_][A-Za-z0-9_]*)"
                   r"(?:!(?P<hint>[A-Za-z_][A-Za-z0-9_]*))?(?:\((?P<embed>.*)\))?$", re.S)


def parse_select(text: str) -> list[SelectItem]:
    items = []
    for part in _split_top(text):
        part = part.strip()
        match = _ITEM.match(part)
        if not part or match is None:
            raise PostgrestError(400, "PGRST100", f'"failed to parse select parameter ({text})"',
                                 details=f"unsupported select item {part!r} (casts, JSON paths and spreads "
                                         "are not implemented by this fake)")
        hint = match["hint"]
        if match["embed"] is None:
            if hint:
                raise PostgrestError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
            items.append(SelectItem(name=match["name"], alias=match["alias"]))
            continue
        if hint not in (None, "inner", "left"):
            raise PostgrestError(400, "PGRST100", f"unsupported embedding hint !{hint} (only !inner and !left)")
        items.append(SelectItem(name=match["name"], alias=match["alias"], embed=parse_select(match["embed"] or "*"),
                                inner=hint == "inner"))
    return items


# -- values ----------------------------------------------------------------------------------------


_PG_TYPE = {"text": "text", "int": "integer", "float": "double precision", "bool": "boolean", "jsonb": "json",
            "timestamptz": "timestamp with time zone"}


def _coerce(value: str, column: Column) -> Any:
    """A filter value as PostgreSQL would read it for the column's type (22P02 when it cannot)."""
    bad = PostgrestError(400, "22P02", f'invalid input syntax for type {_PG_TYPE[column.type]}: "{value}"')
    if column.type == "text":
        return value
    if column.type == "int":
        try:
            return int(value)
        except ValueError:
            raise bad from None
    if column.type == "float":
        try:
            return float(value)
        except ValueError:
            raise bad from None
    if column.type == "bool":
        lowered = value.lower()
        if lowered in ("true", "t", "yes", "on", "1"):
            return True
        if lowered in ("false", "f", "no", "off", "0"):
            return False
        raise bad
    if column.type == "timestamptz":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad from None
    raise PostgrestError(400, "PGRST100", f"filtering on {column.type} columns is not implemented by this fake")


def _parse_in_list(raw: str) -> list[str]:
    if not (raw.startswith("(") and raw.endswith(")")):
        raise PostgrestError(400, "PGRST100", f'"failed to parse filter (in.{raw})"')
    values, current, quoted, escaped, had_quotes = [], [], False, False, False
    for char in raw[1:-1]:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
            had_quotes = True
        elif char == "," and not quoted:
            values.append("".join(current) if had_quotes else "".join(current).strip())
            current, had_quotes = [], False
        else:
            current.append(char)
    if raw[1:-1] or current:
        values.append("".join(current) if had_quotes else "".join(current).strip())
    return values


@dataclass
class Filter:
    path: tuple[str, ...]  # embedded relationship keys, then the column
    op: str
    value: Any
    negate: bool = False

    def test(self, row_value: Any) -> bool:
        if self.op == "eq":
            result = row_value is not None and row_value == self.value
        elif self.op in _COMPARE:
            result = row_value is not None and _COMPARE[self.op](row_value, self.value)
        elif self.op == "in":
            result = row_value is not None and row_value in self.value
        else:  # is
            result = row_value is self.value if self.value is not None else row_value is None
        return not result if self.negate else result


_COMPARE = {
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
}


def _sortable(value: Any, column: Column) -> Any:
    if value is None:
        return None
    if column.type == "timestamptz":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if column.type == "jsonb":
        return json.dumps(value, sort_keys=True)
    return value


# -- the server ------------------------------------------------------------------------------------


class _QuickStopHTTPServer(HTTPServer):
    """pytest-httpserver polls for shutdown every 0.5 s; 0.05 s keeps a test's teardown quick."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.05)


class PostgrestFake:
    """In-memory ``skills``/``challenges``/``answers`` served as PostgREST on 127.0.0.1."""

    def __init__(self, key: str = "test-supabase-key-5f1c", *, max_rows: int = 1000) -> None:
        self.key = key
        self.max_rows = max_rows
        self.tables: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMA}
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self._lookups: dict[tuple[str, str], dict[Any, list[dict[str, Any]]]] = {}
        # Filtered, embedded, ordered rows of a query without its cursor and range, so that a keyset
        # or offset page costs a slice (the benchmarks page through 10⁶ answers); cleared by ``load``.
        self._results: dict[tuple, list[dict[str, Any]]] = {}
        self.latency = 0.0  # seconds added to every response (a round trip to a hosted project)
        self.functions: dict[str, Any] = {}  # installed SQL functions (``postgrest_rpc``), by name
        self.roles = Roles()  # database roles selected by a bearer token (``postgrest_roles``)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuickStopHTTPServer("127.0.0.1", 0, threaded=True)
        self._server.expect_request(re.compile(r"^/rest/v1/.*")).respond_with_handler(self._handle)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> PostgrestFake:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server.is_running():
            self._server.stop()

    @property
    def url(self) -> str:
        """The project URL to give ``create_client`` (the SDK appends ``/rest/v1``)."""
        return f"http://127.0.0.1:{self._server.port}"

    def check(self) -> None:
        """Fail on violations not taken by the test, requests no handler took, and handler crashes."""
        violations, self.violations = self.violations, []
        assert not violations, "PostgREST fake saw requests the real service would reject:\n" + "\n".join(violations)
        self._server.check_assertions()
        self._server.check_handler_errors()

    def take_violations(self) -> list[str]:
        """Hand over (and forget) the violations a test provoked on purpose."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    # -- fixture data ------------------------------------------------------------------------------
    def load(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows, checked against the schema, primary keys and foreign keys like the database would."""
        if table not in SCHEMA:
            raise KeyError(f"unknown table {table!r}")
        columns = SCHEMA[table]
        with self._lock:
            ids = set(self._lookup(table, "id"))
            stored = []
            for row in rows:
                if unknown := set(row) - set(columns):
                    raise KeyError(f"{table}: unknown column(s) {sorted(unknown)}")
                clean: dict[str, Any] = {}
                for name, column in columns.items():
                    value = row.get(name)
                    if value is None and not column.nullable:
                        raise ValueError(f"{table}.{name} is not nullable (row {row.get('id')!r})")
                    if isinstance(value, datetime):
                        value = value.isoformat()
                    clean[name] = value
                if clean["id"] in ids:
                    raise ValueError(f"{table}: duplicate id {clean['id']!r}")
                for (fk_table, fk_column), (ref_table, ref_column) in FOREIGN_KEYS.items():
                    if fk_table == table and clean[fk_column] not in self._lookup(ref_table, ref_column):
                        raise ValueError(f"{table}.{fk_column} = {clean[fk_column]!r} references no {ref_table} row")
                ids.add(clean["id"])
                stored.append(clean)
            self.tables[table].extend(stored)
            self._lookups = {k: v for k, v in self._lookups.items() if k[0] != table}
            self._results = {}

    def _lookup(self, table: str, column: str) -> dict[Any, list[dict[str, Any]]]:
        """Rows of ``table`` by the value of ``column`` (embeds and foreign-key checks), rebuilt after a load."""
        key = (table, column)
        if key not in self._lookups:
            index: dict[Any, list[dict[str, Any]]] = {}
            for row in self.tables[table]:
                index.setdefault(row[column], []).append(row)
            self._lookups[key] = index
        return self._lookups[key]

    def inject(self, kind: FaultKind, *, table: str | None = None, offset: int | None = None, times: int | None = 1,
               delay: float = 2.0, column: str = "question") -> Fault:
        """Make the next ``times`` matching GETs fail as ``kind`` (``None``: every one)."""
        fault = Fault(kind=kind, table=table, offset=offset, times=times, delay=delay, column=column)
        with self._lock:
            self.faults.append(fault)
        return fault

    def requests_for(self, table: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.table == table]

    # -- request handling --------------------------------------------------------------------------
    def _record(self, request: Request) -> RecordedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["apikey"] = "<right key>" if headers.get("apikey") == self.key else "<wrong or missing key>"
        if "authorization" in headers:
            bearer = headers["authorization"].removeprefix("Bearer ")
            role = self.roles.role(bearer)
            headers["authorization"] = (
                "<bearer right key>" if bearer == self.key else f"<bearer role {role.name}>" if role
                else "<wrong authorization>"
            )
        query = unquote(request.query_string.decode("latin-1").replace("+", " "))
        recorded = RecordedRequest(
            method=request.method, path=request.path, query=query,
            params=list(request.args.items(multi=True)), headers=headers,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _violation(self, recorded: RecordedRequest, text: str) -> None:
        with self._lock:
            self.violations.append(f"{recorded.method} {recorded.path}?{recorded.query}: {text}")

    def _handle(self, request: Request) -> Response:
        recorded = self._record(request)
        if self.latency:
            self._stopping.wait(self.latency)
        try:
            role = self._authorise(request, recorded)
            if request.path.startswith("/rest/v1/rpc/"):
                from skill_pipeline_tests.fakes.postgrest_rpc import call_function

                status, body, headers = call_function(self, request, recorded, role)
                recorded.status = status
                return self._response(status, body, headers)
            if request.method not in ("GET", "HEAD"):
                raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {request.method} "
                                     "(the pipeline never writes to the app's tables)")
            table = request.path.removeprefix("/rest/v1/")
            if table not in SCHEMA:
                raise PostgrestError(404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache")
            status, body, headers = self._select(table, request, recorded, role)
        except PostgrestError as exc:
            if exc.violation:
                self._violation(recorded, f"{exc.status} {json.dumps(exc.body)}")
            recorded.status = exc.status
            return Response(json.dumps(exc.body), status=exc.status, content_type="application/json; charset=utf-8")
        fault = self._take_fault(table, recorded.position)
        if fault is not None:
            recorded.fault = fault.kind
            return self._faulty(fault, request, recorded, status, body, headers)
        recorded.status = status
        return self._response(status, body, headers)

    def _authorise(self, request: Request, recorded: RecordedRequest) -> Role | None:
        """The role the request runs as: None for the project key (every grant), else the role of
        its bearer token."""
        apikey = request.headers.get("apikey")
        if apikey is None:
            raise PostgrestError(401, None, "No API key found in request",
                                 hint="No `apikey` request header or url param was found.")
        if apikey != self.key:
            raise PostgrestError(401, None, "Invalid API key",
                                 hint="Double check your Supabase `anon` or `service_role` API key.")
        authorization = request.headers.get("Authorization")
        role = None
        if authorization is not None and authorization != f"Bearer {self.key}":
            role = self.roles.role(authorization.removeprefix("Bearer "))
            if role is None:
                raise PostgrestError(401, "PGRST301", "JWSError JWSInvalidSignature")
        recorded.role = role.name if role else None
        profile = request.headers.get("Accept-Profile")
        if profile is not None and profile != "public":
            raise PostgrestError(406, "PGRST106", "The schema must be one of the following: public")
        accept = request.headers.get("Accept", "*/*")
        if not any(a.strip().split(";")[0] in ("*/*", "application/json") for a in accept.split(",")):
            raise PostgrestError(406, "PGRST107", f"None of these media types are available: {accept} "
                                 "(this fake serves JSON arrays only)")
        return role

    def _take_fault(self, table: str, offset: int) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(table, offset):
                    fault.served += 1
                    return fault
        return None

    @staticmethod
    def _response(status: int, body: bytes, headers: dict[str, str]) -> Response:
        return Response(body, status=status, headers=headers, content_type="application/json; charset=utf-8")

    def _faulty(self, fault: Fault, request: Request, recorded: RecordedRequest, status: int, body: bytes,
                headers: dict[str, str]) -> Response:
        if fault.kind == "status_500":
            recorded.status = 500
            error = {"code": "XX000", "details": None, "hint": None, "message": "internal error (injected)"}
            return Response(json.dumps(error), status=500, content_type="application/json; charset=utf-8")
        if fault.kind == "status_503":
            recorded.status = 503
            error = {"code": "PGRST002", "details": None, "hint": None,
                     "message": "Could not query the database for the schema cache. Retrying."}
            return Response(json.dumps(error), status=503, content_type="application/json; charset=utf-8")
        if fault.kind == "drop_connection":
            sock: socket.socket = request.environ["werkzeug.socket"]
            sock.shutdown(socket.SHUT_RDWR)
            recorded.status = -1
            return Response(b"", status=200)  # werkzeug's write fails on the closed socket and is dropped
        if fault.kind == "slow":
            self._stopping.wait(fault.delay)
            recorded.status = status
            return self._response(status, body, headers)
        if fault.kind == "truncated_json":
            recorded.status = status
            return self._response(status, body[: max(1, len(body) // 2)], headers)
        rows = json.loads(body)
        if fault.kind == "missing_rows":
            drop = max(1, len(rows) // 10)
            middle = len(rows) // 2
            rows = rows[:middle] + rows[middle + drop:]
        elif fault.kind == "missing_key":
            rows = [{k: v for k, v in row.items() if k != fault.column} for row in rows]
        recorded.status = status
        return self._response(status, json.dumps(rows).encode(), headers)

    # -- the read ----------------------------------------------------------------------------------
    def _select(self, table: str, request: Request, recorded: RecordedRequest,
                role: Role | None = None) -> tuple[int, bytes, dict[str, str]]:
        args = request.args
        for name in ("select", "order", "offset", "limit"):
            if len(args.getlist(name)) > 1:
                raise PostgrestError(400, "PGRST100", f"{name} given {len(args.getlist(name))} times")
        items = parse_select(args.get("select", "*"))
        self._check_select(table, items)
        filters = self._filters(table, items, args)
        order = self._order(table, args.get("order"))
        if role is not None:
            self._check_grants(role, table, items, filters, [column for column, *_ in order])
        offset = _int_param(request, "offset", 0)
        limit = _int_param(request, "limit", None)
        if (args.get("offset") is not None or limit is not None) and not order:
            self._violation(recorded, "offset/limit without order: PostgreSQL returns rows in no particular order, "
                                      "so pages repeat and skip rows")
        prefer = [p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()]
        count_wanted = any(p in ("count=exact", "count=planned", "count=estimated") for p in prefer)

        # A keyset cursor on the order's only column (``id=gt.X&order=id.asc``) is applied by bisection
        # on the cached result; every other filter is part of the cached query.
        cursor = [f for f in filters if f.path == ("id",) and f.op in ("gt", "gte") and not f.negate
                  and order == [("id", False, False)]]
        filters = [f for f in filters if f not in cursor]
        key = (table, args.get("select", "*"), tuple((f.path, f.op, repr(f.value), f.negate) for f in filters),
               tuple(order), None if order else offset)
        with self._lock:
            rows = self._results.get(key)
            if rows is None:
                rows = [self._embed(table, row, items, filters, ()) for row in self.tables[table]]
                rows = [row for row in rows if row is not None]
                if order:
                    for column, descending, nulls_first in reversed(order):
                        kind = SCHEMA[table][column]
                        present = [r for r in rows if r["__row__"][column] is not None]
                        absent = [r for r in rows if r["__row__"][column] is None]
                        present.sort(key=lambda r: _sortable(r["__row__"][column], kind), reverse=descending)
                        rows = absent + present if nulls_first else present + absent
                else:
                    # No order: PostgreSQL promises none, and plans change between pages. A shuffle that
                    # differs per offset makes pages repeat and skip rows, as they can in production.
                    rows.sort(key=lambda r: zlib.crc32(f"{r['__row__']['id']}:{offset}".encode()))
                self._results[key] = rows
        start = 0
        for flt in cursor:
            ids = _IdKeys(rows)
            start = max(start, (bisect.bisect_right if flt.op == "gt" else bisect.bisect_left)(ids, flt.value))
        recorded.position = start + offset
        rows = rows[start:]
        total = len(rows)
        cap = self.max_rows if limit is None else min(limit, self.max_rows)
        page = rows[offset: offset + cap]
        body = json.dumps([r["__out__"] for r in page], ensure_ascii=False, separators=(",", ":")).encode()
        first, last = offset, offset + len(page) - 1
        shown_total = total if count_wanted else None
        if shown_total is not None and first > shown_total:
            raise PostgrestError(416, "PGRST103", "Requested range not satisfiable",
                                 details=f"An offset of {offset} was requested, but there are only {total} rows.",
                                 violation=False)
        range_text = f"{first}-{last}" if first <= last and shown_total != 0 else "*"
        headers = {"Content-Range": f"{range_text}/{'*' if shown_total is None else shown_total}"}
        status = 206 if shown_total is not None and len(page) < shown_total else 200
        return status, (b"" if request.method == "HEAD" else body), headers

    def _relation(self, table: str, name: str) -> tuple[str, str, str, bool]:
        """(target table, local column, target column, to_many) of the embed ``name`` from ``table``."""
        for (fk_table, fk_column), (ref_table, ref_column) in FOREIGN_KEYS.items():
            if fk_table == table and ref_table == name:
                return ref_table, fk_column, ref_column, False
            if ref_table == table and fk_table == name:
                return fk_table, ref_column, fk_column, True
        raise PostgrestError(
            400, "PGRST200", f"Could not find a relationship between '{table}' and '{name}' in the schema cache",
            hint=None, details=f"Searched for a foreign key relationship between '{table}' and '{name}' in the "
                               "schema 'public', but no matches were found.",
        )

    def _check_select(self, table: str, items: list[SelectItem]) -> None:
        for item in items:
            if item.embed is None:
                if item.name != "*" and item.name not in SCHEMA[table]:
                    raise PostgrestError(400, "42703", f"column {table}.{item.name} does not exist")
            else:
                target, *_ = self._relation(table, item.name)
                self._check_select(target, item.embed)

    def _check_grants(self, role: Role, table: str, items: list[SelectItem], filters: list[Filter],
                      order: list[str]) -> None:
        """PostgreSQL needs SELECT on every column a query reads: selected, filtered on or ordered by."""
        used: dict[str, set[str]] = {}

        def walk(target: str, level: list[SelectItem]) -> None:
            for item in level:
                if item.embed is None:
                    used.setdefault(target, set()).update(SCHEMA[target] if item.name == "*" else {item.name})
                else:
                    walk(self._relation(target, item.name)[0], item.embed)

        walk(table, items)
        used.setdefault(table, set()).update(order)
        for flt in filters:
            target, level = table, items
            for step in flt.path[:-1]:
                embed = next(i for i in level if i.embed is not None and i.key == step)
                target, level = self._relation(target, embed.name)[0], embed.embed or []
            used.setdefault(target, set()).add(flt.path[-1])
        for target, columns in used.items():
            role.check_columns(target, columns)

    def _filters(self, table: str, items: list[SelectItem], args: Any) -> list[Filter]:
        filters = []
        for key, raw in args.items(multi=True):
            if key in RESERVED_PARAMS:
                continue
            *path, column = key.split(".")
            if column in ("order", "limit", "offset", "or", "and", "not"):
                raise PostgrestError(400, "PGRST100", f"'{key}' is not implemented by this fake")
            target = table
            level = items
            for step in path:
                embed = next((i for i in level if i.embed is not None and i.key == step), None)
                if embed is None:
                    raise PostgrestError(400, "PGRST108", f"'{step}' is not an embedded resource in this request",
                                         hint=f"Verify that '{step}' is included in the 'select' query parameter.")
                target, *_ = self._relation(target, embed.name)
                level = embed.embed or []
            if column not in SCHEMA[target]:
                raise PostgrestError(400, "42703", f"column {target}.{column} does not exist")
            negate = raw.startswith("not.")
            op, sep, value = raw.removeprefix("not.").partition(".")
            if not sep or op not in KNOWN_OPERATORS:
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter ({raw})" (line 1, column 1)',
                                     details=f"unknown operator {op!r}")
            if op not in SUPPORTED_OPERATORS:
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter ({raw})"',
                                     details=f"operator {op!r} is not implemented by this fake (eq, in, is, gt, gte, lt, lte)")
            kind = SCHEMA[target][column]
            if op == "eq" or op in _COMPARE:
                parsed: Any = _coerce(value, kind)
            elif op == "in":
                parsed = [_coerce(v, kind) for v in _parse_in_list(value)]
            else:
                lookup = {"null": None, "true": True, "false": False}
                if value.lower() not in lookup:
                    raise PostgrestError(400, "PGRST100", f'"failed to parse filter ({raw})"',
                                         details="is. takes null, true or false")
                parsed = lookup[value.lower()]
            filters.append(Filter(path=(*path, column), op=op, value=parsed, negate=negate))
        return filters

    def _order(self, table: str, raw: str | None) -> list[tuple[str, bool, bool]]:
        if raw is None:
            return []
        terms = []
        for term in raw.split(","):
            column, *modifiers = term.strip().split(".")
            if "(" in column or "->" in column:
                raise PostgrestError(400, "PGRST100", f"ordering by '{column}' is not implemented by this fake")
            if column not in SCHEMA[table]:
                raise PostgrestError(400, "42703", f"column {table}.{column} does not exist")
            descending, nulls_first = False, None
            for modifier in modifiers:
                if modifier in ("asc", "desc"):
                    descending = modifier == "desc"
                elif modifier in ("nullsfirst", "nullslast"):
                    nulls_first = modifier == "nullsfirst"
                else:
                    raise PostgrestError(400, "PGRST100", f'"failed to parse order ({raw})"')
            # PostgreSQL: NULLS LAST is the default for ASC, NULLS FIRST for DESC.
            terms.append((column, descending, descending if nulls_first is None else nulls_first))
        return terms

    def _embed(self, table: str, row: dict[str, Any], items: list[SelectItem], filters: list[Filter],
               prefix: tuple[str, ...]) -> dict[str, Any] | None:
        """The row as output (``__out__``) with its embeds, or None when a filter or ``!inner`` drops it."""
        for flt in filters:
            if flt.path[:-1] == prefix and not flt.test(row[flt.path[-1]]):
                return None
        out: dict[str, Any] = {}
        for item in items:
            if item.embed is None:
                if item.name == "*":
                    out.update(row)
                else:
                    out[item.key] = row[item.name]
                continue
            target, local, remote, to_many = self._relation(table, item.name)
            related = self._lookup(target, remote).get(row[local], [])
            embedded = [e for e in (self._embed(target, r, item.embed, filters, (*prefix, item.key)) for r in related)
                        if e is not None]
            if item.inner and not embedded:
                return None
            outs = [e["__out__"] for e in embedded]
            out[item.key] = outs if to_many else (outs[0] if outs else None)
        return {"__row__": row, "__out__": out}


class _IdKeys:
    """The ``id`` of each cached row as a sequence ``bisect`` can search without copying."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Any:
        return self._rows[index]["__row__"]["id"]


def _int_param(request: Request, name: str, default: int | None) -> Any:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise PostgrestError(400, "PGRST100", f'"failed to parse {name} parameter ({raw})"')
    return int(raw)


@contextmanager
def serve_postgrest(key: str = "test-supabase-key-5f1c", *, max_rows: int = 1000) -> Iterator[PostgrestFake]:
    """A started fake; on leaving, any violation the caller did not take fails (AssertionError)."""
    fake = PostgrestFake(key, max_rows=max_rows).start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.check()


@pytest.fixture
def postgrest_fake() -> Iterator[PostgrestFake]:
    """``serve_postgrest()`` as a fixture: import it into a test module to use it."""
    with serve_postgrest() as fake:
        yield fake
