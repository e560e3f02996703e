"""SkillStore: the learning app's data (``skills``, ``challenges``, ``answers``), read only.

One interface, two backends: ``skill_store_supabase`` (production, the ``supabase`` SDK) and
``skill_store_sqlite`` (the embedded default: a local SQLite file with the same tables). The
interface module imports neither, so a code location that uses one never loads the other's SDK.
Only the columns the pipeline uses are read. A store starts empty; the demo fills the embedded
one (``skill_pipeline.demo.stores``), never the store itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import hashlib
from dataclasses import dataclass

import pandas as pd
from dagster import ConfigurableResource

from skill_pipeline.models import Skill

CHALLENGE_COLUMNS = ["id", "skill_id", "difficulty", "question", "options_json", "correct_option", "explanation"]
ANSWER_COLUMNS = ["challenge_id", "is_correct", "response_time", "confidence", "user_key"]
# Where a ChallengeData came from: the SQL function of ``supabase/migrations`` (one request per page
# of challenges), keyset pages of the tables through PostgREST, or the embedded SQLite file.
READ_PATHS = ("rpc", "keyset", "sqlite")
USER_KEY_HEX = 16


class SkillNotFound(LookupError):
    pass


def user_key(skill_id: str, user_id: str) -> str:
    """The pseudonym of a user within one skill: the first 16 hex digits of sha256("<skill>:<user>").

    Discrimination (item-total correlation) needs to know which answers share a user, never who the
    user is. The raw user id is read inside the store and replaced here; the SQL function of
    ``supabase/migrations`` computes the same value in the database
    (``left(encode(sha256(convert_to(skill_id || ':' || user_id, 'UTF8')), 'hex'), 16)``), so every
    read path yields identical keys. Per skill, so keys cannot be joined across skills' frames.
    64 bits: a collision among a skill's users is negligible (~n²/2⁶⁵). It is a pseudonym, not
    anonymity: whoever holds the app's user ids can recompute it, which is why it stays in frames.
    """
    return hashlib.sha256(f"{skill_id}:{user_id}".encode()).hexdigest()[:USER_KEY_HEX]


def user_keys(skill_id: str, user_ids: pd.Series) -> pd.Series:
    """``user_key`` for a column of user ids, hashing each distinct user once (answers repeat users)."""
    distinct = pd.unique(user_ids.astype(str).to_numpy(dtype=object))
    keys = {uid: user_key(skill_id, uid) for uid in distinct}
    return user_ids.astype(str).map(keys)


def normalise_challenges(frame: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes from every backend, whatever the data (empty, nulls or not)."""
    frame = frame.reindex(columns=CHALLENGE_COLUMNS)
    frame["explanation"] = frame["explanation"].fillna("")
    return frame.astype(
        {"id": "str", "skill_id": "str", "difficulty": "int64", "question": "str", "options_json": "str",
         "correct_option": "int64", "explanation": "str"}
    )


def normalise_answers(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=ANSWER_COLUMNS)
    return frame.astype(
        {"challenge_id": "str", "is_correct": "bool", "response_time": "float64", "confidence": "float64",
         "user_key": "str"}
    )


@dataclass(frozen=True)
class ChallengeData:
    """A skill's challenges and ALL their answers (not the first one: the seed's mistake).

    ``challenges`` has CHALLENGE_COLUMNS (``options_json`` as stored: a JSON string or a list);
    ``answers`` has ANSWER_COLUMNS, ``response_time`` in milliseconds, ``confidence`` 1–5,
    ``user_key`` the pseudonym of ``user_key()`` (the user id itself never leaves the store).
    ``read_path`` says how it was read (one of READ_PATHS), for the asset's metadata.
    """

    challenges: pd.DataFrame
    answers: pd.DataFrame
    read_path: str = "unknown"


class SkillStore(ConfigurableResource, ABC):
    """What the pipeline reads from the app. Adapters translate their backend's errors into
    errors that name the backend, the table and the skill."""

    @property
    @abstractmethod
    def backend(self) -> str:
        """Short name for metadata and messages (``sqlite``, ``supabase``)."""

    @abstractmethod
    def list_skills(self, active_only: bool = True) -> list[Skill]:
        """Every skill (only active ones by default), ordered by id."""

    @abstractmethod
    def get_skill(self, skill_id: str) -> Skill:
        """One skill; ``SkillNotFound`` naming the id when it does not exist."""

    @abstractmethod
    def load_challenges(self, skill_id: str) -> ChallengeData:
        """Every challenge of the skill and every answer to them (correct or not)."""
