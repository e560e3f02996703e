"""SkillStore: the learning app's data (``skills``, ``challenges``, ``answers``), read only.

One interface, two backends: ``skill_store_supabase`` (production, the ``supabase`` SDK) and
``skill_store_sqlite`` (the embedded default: a local SQLite file with the same tables). The
interface module imports neither, so a code location that uses one never loads the other's SDK.
Only the columns the pipeline uses are read. A store starts empty; the demo fills the embedded
one (``skill_pipeline.demo.stores``), never the store itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import pandas as pd
from dagster import ConfigurableResource

from skill_pipeline.models import Skill

CHALLENGE_COLUMNS = ["id", "skill_id", "difficulty", "question", "options_json", "correct_option", "explanation"]
ANSWER_COLUMNS = ["challenge_id", "is_correct", "response_time", "confidence"]


class SkillNotFound(LookupError):
    pass


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
        {"challenge_id": "str", "is_correct": "bool", "response_time": "float64", "confidence": "float64"}
    )


@dataclass(frozen=True)
class ChallengeData:
    """A skill's challenges and ALL their answers (not the first one: the seed's mistake).

    ``challenges`` has CHALLENGE_COLUMNS (``options_json`` as stored: a JSON string or a list);
    ``answers`` has ANSWER_COLUMNS, ``response_time`` in milliseconds, ``confidence`` 1–5.
    """

    challenges: pd.DataFrame
    answers: pd.DataFrame


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
