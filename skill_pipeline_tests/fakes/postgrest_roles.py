"""Database roles for the PostgREST fake: a request whose bearer token is a role's JWT runs with that
role's grants, as PostgREST switches to the JWT's ``role`` claim.

What PostgreSQL refuses, the fake refuses the same way: a selected, filtered or ordered column the
role has no SELECT grant on (``42501 permission denied for table <t>``), and a function it may not
EXECUTE (``42501 permission denied for function <f>``). PostgREST answers 42501 with 401 for the
anonymous role and 403 for any other; a role token is never anonymous here, so 403.

The tokens are opaque strings: the real gateway checks the JWT's signature against the project's
secret; the fake checks that the token is one it issued (``PGRST301`` otherwise, as for a bad
signature).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class Role:
    name: str
    columns: dict[str, set[str]]  # table -> columns with a SELECT grant
    functions: set[str] = field(default_factory=set)  # functions with an EXECUTE grant

    def check_columns(self, table: str, columns: set[str]) -> None:
        from skill_pipeline_tests.fakes.postgrest_server import PostgrestError

        if not columns <= self.columns.get(table, set()):
            raise PostgrestError(403, "42501", f"permission denied for table {table}")

    def check_function(self, name: str) -> None:
        from skill_pipeline_tests.fakes.postgrest_server import PostgrestError

        if name not in self.functions:
            raise PostgrestError(403, "42501", f"permission denied for function {name}")


class Roles:
    """The roles a fake knows, by the token that selects them."""

    def __init__(self) -> None:
        self._by_token: dict[str, Role] = {}

    def add(self, name: str, columns: dict[str, set[str]], functions: set[str] | None = None) -> str:
        """A role with these grants; returns the token (the JWT's stand-in) a client sends as bearer."""
        token = f"jwt-{name}-{secrets.token_hex(8)}"
        self._by_token[token] = Role(name, {t: set(c) for t, c in columns.items()}, set(functions or ()))
        return token

    def role(self, token: str) -> Role | None:
        return self._by_token.get(token)
