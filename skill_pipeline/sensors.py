"""``skill_sensor``: notices new, changed and re-activated skills in the app database."""


import json

import dagster as dg
from pydantic import BaseModel

from skill_pipeline.jobs import skill_dataset_job
from skill_pipeline.models import Skill
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.skill_store import SkillStore


SKILL_NAME_TAG = "skill_pipeline/skill_name"


def skill_tags(name: str) -> dict[str, str]:
    """The skill's name as a run tag: runs are found and read by name, not by partition UUID."""
    return {SKILL_NAME_TAG: name[:200]}


class SensorCursor(BaseModel):
    """What the sensor saw last tick: the fingerprint of each active skill, and how many times each
    skill has (re)entered the active set, so that re-activation gets a fresh run key (Dagster
    remembers run keys for the sensor's lifetime)."""

    active: dict[str, str] = {}
    epochs: dict[str, int] = {}


def decide(cursor: SensorCursor, skills: list[Skill], known_partitions: set[str]) -> tuple[list[str], list[dg.RunRequest], SensorCursor]:
    """New partitions, run requests and the next cursor, from what the store lists now."""
    new_partitions = [s.id for s in skills if s.id not in known_partitions]
    epochs = dict(cursor.epochs)
    requests: list[dg.RunRequest] = []
    for skill in skills:
        previous = cursor.active.get(skill.id)
        if previous == skill.fingerprint and skill.id in known_partitions:
            continue
        if previous is None:
            epochs[skill.id] = epochs.get(skill.id, 0) + 1
            reason = "new skill" if skill.id not in known_partitions else "skill without a run this sensor saw"
        else:
            reason = "name or description changed"
        requests.append(
            dg.RunRequest(
                partition_key=skill.id,
                run_key=f"{skill.id}:{skill.fingerprint}:{epochs[skill.id]}",
                tags={"skill_pipeline/reason": reason, **skill_tags(skill.name)},
            )
        )
    nxt = SensorCursor(active={s.id: s.fingerprint for s in skills}, epochs=epochs)
    return new_partitions, requests, nxt


@dg.sensor(
    job=skill_dataset_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lists active skills; adds a partition for each new one and requests its scenarios and dataset in "
        "the same tick. On a fresh instance the first tick backfills every skill without a dataset (a skill "
        "whose dataset exists is adopted, not regenerated). A changed name or description, or a "
        "re-activated skill, gets a new run."
    ),
)
def skill_sensor(context: dg.SensorEvaluationContext, skill_store: SkillStore) -> dg.SensorResult:
    cursor = SensorCursor.model_validate(json.loads(context.cursor)) if context.cursor else SensorCursor()
    skills = skill_store.list_skills(active_only=True)
    known = set(context.instance.get_dynamic_partitions(skills_partitions.name))
    new_partitions, requests, nxt = decide(cursor, skills, known)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[skills_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(nxt.model_dump(), separators=(",", ":")),
        skip_reason=None if requests else f"{len(skills)} active skills, none new or changed",
    )


# skills_overview's automation condition is evaluated by this sensor; declared (not left to Dagster's
# default sensor, which starts stopped) so that it runs as soon as the code location loads.
overview_automation_sensor = dg.AutomationConditionSensorDefinition(
    "skills_overview_automation",
    target=dg.AssetSelection.assets("skills_overview"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes skills_overview after skill_dataset updates (dataset and promotion runs).",
)
