"""How the Supabase store turns PostgREST pages into typed columns, page by page.

Why not one pydantic object (or dict) per answer: at 10⁶ answers a row object costs ~1 KiB and a
list of them ~2.5 GiB at peak (measured, issue 13). Here each page (at most 1,000 rows, or one
page of challenges with their packed answers) is checked column-wise and turned into numpy arrays
at once; the page's dicts are dropped before the next page is read. Strings that repeat across
answers (the challenge id, the user key) are interned, so a frame column holds one pointer per
answer and one string per distinct value. The raw ``user_id`` is replaced by its pseudonym
(``skill_store.user_key``) as the page is read and is never stored.

Errors name the table, the skill and the first bad row, as the per-row validation did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from skill_pipeline.resources.skill_store import ANSWER_COLUMNS, normalise_answers, user_key

# What the keyset path selects from ``answers``: ``user_id`` only to be pseudonymised here.
ANSWER_SELECT = "id,challenge_id,user_id,is_correct,response_time,confidence,challenges!inner(skill_id)"
# The packed answer arrays of one row of the SQL function, in ANSWER_COLUMNS order after challenge_id.
PACKED = ("is_correct", "response_time", "confidence", "user_key")


class InconsistentRead(Exception):
    """The pages of one read do not add up (rows missing, repeated, or out of order)."""


def _bad(what: str, rows: Sequence[dict[str, Any]], index: int, field: str, why: str) -> ValueError:
    row_id = rows[index].get("id") if isinstance(rows[index], dict) else None
    return ValueError(f"{what}: row {index} (id {row_id!r}) is invalid: {field}: {why}")


def column(rows: Sequence[dict[str, Any]], name: str, what: str) -> list[Any]:
    """One column of a page; a row without the key is named (PostgREST never omits a selected column)."""
    try:
        return [row[name] for row in rows]
    except KeyError:
        index = next(i for i, row in enumerate(rows) if name not in row)
        raise _bad(what, rows, index, name, "Field required") from None


def _numbers(values: list[Any], rows: Sequence[dict[str, Any]], name: str, what: str) -> np.ndarray:
    """A nullable numeric column as float64 with NaN for null. Only JSON numbers are accepted: numpy
    would quietly read the string "12" as 12, a sign the column is not what the store thinks."""
    for index, value in enumerate(values):
        if value is not None and (type(value) not in (int, float)):
            raise _bad(what, rows, index, name, f"not a number: {value!r}")
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _bools(values: list[Any], rows: Sequence[dict[str, Any]], name: str, what: str) -> np.ndarray:
    for index, value in enumerate(values):
        if type(value) is not bool:
            raise _bad(what, rows, index, name, f"not a boolean: {value!r}")
    return np.array(values, dtype=bool)


def _ids(values: list[Any], rows: Sequence[dict[str, Any]], name: str, what: str) -> list[str]:
    """Ids may be bigint (a JSON number) or text/uuid; both become strings, as in ``supabase_rows``."""
    out = []
    for index, value in enumerate(values):
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _bad(what, rows, index, name, f"not an id: {value!r}")
        out.append(value if isinstance(value, str) else str(value))
    return out


class AnswerColumns:
    """Answers accumulated as typed arrays, one chunk per page, concatenated once at the end.

    ``id_hashes`` keeps 8 bytes per answer read on the keyset path so that a repeated id anywhere
    in the read is found (``repeated_ids``) without a set of a million strings.
    """

    def __init__(self, skill_id: str, shared_with: "AnswerColumns | None" = None) -> None:
        """``shared_with``: another part of the same read (see ``joined``) whose string tables this one
        uses, so a user key or challenge id is one string across parts read in parallel threads
        (``dict.setdefault`` is atomic under the GIL)."""
        self.skill_id = skill_id
        self._strings: dict[str, str] = shared_with._strings if shared_with else {}
        self._user_keys: dict[str, str] = shared_with._user_keys if shared_with else {}
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in ANSWER_COLUMNS}
        self._id_hashes: list[np.ndarray] = []
        self.rows = 0

    def _intern(self, values: list[str]) -> np.ndarray:
        strings = self._strings
        return np.array([strings.setdefault(v, v) for v in values], dtype=object)

    def _pseudonyms(self, user_ids: list[str]) -> np.ndarray:
        keys = self._user_keys
        out = np.empty(len(user_ids), dtype=object)
        for index, uid in enumerate(user_ids):
            key = keys.get(uid)
            if key is None:
                key = keys.setdefault(uid, user_key(self.skill_id, uid))
            out[index] = key
        return out

    def _append(self, challenge_id: np.ndarray, is_correct: np.ndarray, response_time: np.ndarray,
                confidence: np.ndarray, keys: np.ndarray) -> None:
        for name, values in zip(ANSWER_COLUMNS, (challenge_id, is_correct, response_time, confidence, keys)):
            self._chunks[name].append(values)
        self.rows += len(challenge_id)

    def add_rows(self, rows: list[dict[str, Any]], what: str) -> list[str]:
        """A keyset page of ``answers`` rows (ANSWER_SELECT); returns the page's ids (for the cursor).

        The embedded ``challenges.skill_id`` of every row must be the skill (a proxy or view that
        drops the embedded filter would otherwise hand over another skill's answers).
        """
        ids = _ids(column(rows, "id", what), rows, "id", what)
        challenge_ids = _ids(column(rows, "challenge_id", what), rows, "challenge_id", what)
        user_ids = _ids(column(rows, "user_id", what), rows, "user_id", what)
        is_correct = _bools(column(rows, "is_correct", what), rows, "is_correct", what)
        response_time = _numbers(column(rows, "response_time", what), rows, "response_time", what)
        confidence = _numbers(column(rows, "confidence", what), rows, "confidence", what)
        embedded = column(rows, "challenges", what)
        foreign = [ids[i] for i, e in enumerate(embedded) if not isinstance(e, dict) or e.get("skill_id") != self.skill_id]
        if foreign:
            raise ForeignRows(foreign)
        self._append(self._intern(challenge_ids), is_correct, response_time, confidence, self._pseudonyms(user_ids))
        self._id_hashes.append(np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids)))
        return ids

    def add_packed(self, rows: list[dict[str, Any]], what: str) -> None:
        """A page of the SQL function: one row per challenge, its answers as aligned arrays."""
        for index, row in enumerate(rows):
            arrays = {}
            for name in PACKED:
                value = row.get(name)
                if not isinstance(value, list):
                    raise _bad(what, rows, index, name, f"not an array: {type(value).__name__}")
                arrays[name] = value
            count = row.get("answer_count")
            lengths = sorted({len(v) for v in arrays.values()})
            if type(count) is not int or lengths != [count]:
                raise _bad(what, rows, index, "answer arrays", f"lengths {lengths} do not match answer_count {count!r}")
            if count == 0:
                continue
            keys = arrays["user_key"]
            if not all(isinstance(k, str) for k in keys):
                raise _bad(what, rows, index, "user_key", "not an array of text")
            challenge = str(row["id"])
            challenge = self._strings.setdefault(challenge, challenge)
            shared = np.empty(count, dtype=object)
            shared[:] = [challenge] * count  # np.full(..., dtype=object) would copy the string per element
            self._append(
                shared,
                _bools(arrays["is_correct"], [row] * count, "is_correct", what),
                _numbers(arrays["response_time"], [row] * count, "response_time", what),
                _numbers(arrays["confidence"], [row] * count, "confidence", what),
                np.array([self._user_keys.setdefault(k, k) for k in keys], dtype=object),
            )

    @classmethod
    def joined(cls, skill_id: str, parts: Sequence["AnswerColumns"]) -> "AnswerColumns":
        """One set of columns from reads of disjoint parts of the skill (see ``answer_streams``)."""
        whole = cls(skill_id, shared_with=parts[0] if parts else None)
        for part in parts:
            for name in ANSWER_COLUMNS:
                whole._chunks[name].extend(part._chunks[name])
            whole._id_hashes.extend(part._id_hashes)
            whole.rows += part.rows
        return whole

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the answers where ``mask`` is true (late answers wait for the next run)."""
        for name in ANSWER_COLUMNS:
            joined = np.concatenate(self._chunks[name]) if self._chunks[name] else np.empty(0)
            self._chunks[name] = [joined[mask]]
        self.rows = int(mask.sum())

    def challenge_ids(self) -> np.ndarray:
        chunks = self._chunks["challenge_id"]
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=object)

    def repeated_ids(self) -> bool:
        if not self._id_hashes:
            return False
        hashes = np.sort(np.concatenate(self._id_hashes))
        return bool(np.any(hashes[1:] == hashes[:-1]))

    def frame(self) -> pd.DataFrame:
        data = {}
        empty = {"challenge_id": object, "is_correct": bool, "response_time": float, "confidence": float,
                 "user_key": object}
        for name in ANSWER_COLUMNS:
            chunks = self._chunks[name]
            data[name] = np.concatenate(chunks) if chunks else np.empty(0, dtype=empty[name])
        return normalise_answers(pd.DataFrame(data, columns=ANSWER_COLUMNS))


class ForeignRows(Exception):
    """Rows of another skill came back (the skill filter was not applied)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} row(s) of another skill")
        self.ids = ids
