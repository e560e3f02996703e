"""``POST /rest/v1/rpc/<function>`` for the loopback PostgREST, as PostgREST serves a SQL function.

What the ``supabase`` 2.34 SDK sends for ``client.rpc(fn, params).execute()``: ``POST
/rest/v1/rpc/<fn>`` with the params as a JSON object body, ``Content-Type: application/json`` and
the same ``apikey``/``Authorization`` headers as a table read; no query string unless filters are
chained (the store chains none). PostgREST answers a JSON array of the rows the function returns
(``Content-Range: 0-<n-1>/*``), at most ``max-rows`` of them.

PostgREST resolves the function by name AND by the set of argument names in the body: an unknown
argument, a missing argument without a default, or a function that is not installed is the same
404 ``PGRST202`` ("Could not find the function ... in the schema cache"), with a hint naming the
installed signature when there is one. A value PostgreSQL cannot read as the parameter's type is
a 400 ``22P02``. This module does the same, strictly; ``install_read_function`` installs the
Python twin of ``supabase/migrations/*_skill_pipeline_read.sql`` (its SQL is tested against a real
PostgreSQL in ``test_supabase_sql.py``), and a fake without it simulates "not installed".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from werkzeug import Request

from skill_pipeline.resources.skill_store import user_key

if TYPE_CHECKING:
    from skill_pipeline_tests.fakes.postgrest_roles import Role
    from skill_pipeline_tests.fakes.postgrest_server import PostgrestFake, RecordedRequest

READ_FUNCTION = "skill_pipeline_read"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The columns the SQL function reads (it runs as the caller: SECURITY INVOKER).
READ_COLUMNS = {
    "challenges": {"id", "skill_id", "difficulty", "question", "options_json", "correct_option", "explanation"},
    "answers": {"challenge_id", "user_id", "is_correct", "response_time", "confidence"},
}


@dataclass(frozen=True)
class Param:
    type: str  # "text" | "integer"
    has_default: bool = False


@dataclass
class Function:
    name: str
    params: dict[str, Param]
    body: Callable[[PostgrestFake, dict[str, Any]], list[dict[str, Any]]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"public.{self.name}({', '.join(sorted(self.params))})"


def _read(fake: PostgrestFake, args: dict[str, Any]) -> list[dict[str, Any]]:
    """What the SQL function returns: a page of the skill's challenges, answers packed per challenge."""
    skill, after = args.get("p_skill_id"), args.get("p_after")
    limit = args.get("p_limit")
    limit = min(max(DEFAULT_LIMIT if limit is None else limit, 1), MAX_LIMIT)
    challenges = sorted(
        (c for c in fake.tables["challenges"] if skill is not None and c["skill_id"] == skill
         and (after is None or c["id"] > after)),
        key=lambda c: c["id"],
    )[:limit]
    by_challenge = fake._lookup("answers", "challenge_id")
    rows = []
    for challenge in challenges:
        answers = sorted(by_challenge.get(challenge["id"], []), key=lambda a: a["id"])
        rows.append({
            **{k: challenge[k] for k in ("id", "skill_id", "difficulty", "question", "options_json", "correct_option",
                                         "explanation")},
            "answer_count": len(answers),
            "is_correct": [a["is_correct"] for a in answers],
            "response_time": [a["response_time"] for a in answers],
            "confidence": [a["confidence"] for a in answers],
            "user_key": [user_key(challenge["skill_id"], a["user_id"]) for a in answers],
        })
    return rows


def install_read_function(fake: PostgrestFake, name: str = READ_FUNCTION) -> Function:
    """Install the fake's ``skill_pipeline_read`` (as applying the migration would)."""
    function = Function(
        name=name,
        params={"p_skill_id": Param("text"), "p_after": Param("text", True), "p_limit": Param("integer", True)},
        body=_read,
    )
    fake.functions[name] = function
    return function


def _not_found(name: str, given: list[str], installed: Function | None) -> Exception:
    from skill_pipeline_tests.fakes.postgrest_server import PostgrestError

    listed = ", ".join(sorted(given))
    return PostgrestError(
        404, "PGRST202", f"Could not find the function public.{name}({listed}) in the schema cache",
        details=f"Searched for the function public.{name} with parameters {listed} or with a single unnamed "
                "json/jsonb parameter, but no matches were found in the schema cache.",
        hint=f"Perhaps you meant to call the function {installed.signature}" if installed else None,
        violation=False,  # "not installed" is protocol: the store detects it and falls back
    )


def call_function(fake: PostgrestFake, request: Request, recorded: RecordedRequest,
                  role: Role | None = None) -> tuple[int, bytes, dict[str, str]]:
    from skill_pipeline_tests.fakes.postgrest_server import PostgrestError

    name = request.path.removeprefix("/rest/v1/rpc/")
    if request.method != "POST":
        raise PostgrestError(405, "PGRST117", f"this fake serves functions by POST only, not {request.method}")
    if request.args:
        raise PostgrestError(400, "PGRST100", f"filters on a function's result ({request.query_string.decode()}) "
                             "are not implemented by this fake")
    if request.mimetype != "application/json":
        raise PostgrestError(415, "PGRST102", f"Content-Type {request.mimetype!r} is not application/json")
    try:
        args = json.loads(request.get_data() or b"{}")
    except ValueError:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json") from None
    if not isinstance(args, dict):
        raise PostgrestError(400, "PGRST102", "the body of a function call must be a JSON object")
    recorded.body = args
    function = fake.functions.get(name)
    given = list(args)
    if function is None or set(given) - set(function.params) or {
        p for p, spec in function.params.items() if not spec.has_default
    } - set(given):
        raise _not_found(name, given, function)
    if role is not None:
        # SECURITY INVOKER: the caller needs EXECUTE and SELECT on every column the function reads.
        role.check_function(name)
        for table, columns in READ_COLUMNS.items():
            role.check_columns(table, columns)
    for arg, value in args.items():
        kind = function.params[arg].type
        ok = value is None or (isinstance(value, str) if kind == "text" else type(value) is int)
        if not ok:
            shown = value if isinstance(value, str) else json.dumps(value)
            raise PostgrestError(400, "22P02", f'invalid input syntax for type {kind}: "{shown}"')
    function.calls.append(args)
    rows = function.body(fake, args)[: fake.max_rows]
    body = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
    content_range = f"0-{len(rows) - 1}/*" if rows else "*/*"
    return 200, body, {"Content-Range": content_range}
