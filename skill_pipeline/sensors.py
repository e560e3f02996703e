"""``skill_sensor``: notices new, changed and re-activated skills in the app database, and re-requests
skills whose dataset run failed (with backoff), so that no skill is left without a dataset."""


import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg
from pydantic import BaseModel

from skill_pipeline.batch import BATCH_TAG, new_skills_batch_job, run_config
from skill_pipeline.jobs import skill_dataset_job
from skill_pipeline.models import Skill
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.skill_store import SkillStore


SKILL_NAME_TAG = "skill_pipeline/skill_name"
PARTITION_TAG = "dagster/partition"
CHANGED = "name or description changed"
# Backoff of the sensor's own re-requests, after Dagster's run retries (deploy/dagster.yaml) are spent:
# attempt n waits base × 2^(n-1) from the failed run's end; after the last attempt the skill is reported
# as failed on every tick until its name or description changes or someone runs it by hand.
RETRY_BASE_VARIABLE, RETRY_BASE_DEFAULT = "SKILL_PIPELINE_RETRY_BASE_SECONDS", 300.0
RETRY_ATTEMPTS_VARIABLE, RETRY_ATTEMPTS_DEFAULT = "SKILL_PIPELINE_RETRY_MAX_ATTEMPTS", 5
RUN_QUERY_CHUNK = 500  # partition keys per run query (SQLite bounds the variables of one statement)
# New skills in one tick, at least BATCH_MIN of them, go to new_skills_batch runs (skill_pipeline/batch.py)
# instead of a run each: BATCH_RUNS runs (set it to the "anthropic" pool limit, so that every slot is
# busy) of at most BATCH_MAX skills each. 0 as BATCH_MIN turns batching off.
BATCH_MIN_VARIABLE, BATCH_MIN_DEFAULT = "SKILL_PIPELINE_BATCH_MIN_SKILLS", 8
BATCH_RUNS_VARIABLE, BATCH_RUNS_DEFAULT = "SKILL_PIPELINE_BATCH_RUNS", 4
BATCH_MAX_VARIABLE, BATCH_MAX_DEFAULT = "SKILL_PIPELINE_BATCH_MAX_SKILLS", 25


def skill_tags(name: str) -> dict[str, str]:
    """The skill's name as a run tag: runs are found and read by name, not by partition UUID."""
    return {SKILL_NAME_TAG: name[:200]}


class Retry(BaseModel):
    """The sensor's last re-request of a skill: which attempt, answering which failed run."""

    attempt: int
    after_run: str


class SensorCursor(BaseModel):
    """What the sensor saw last tick: the fingerprint of each active skill, and how many times each
    skill has (re)entered the active set, so that re-activation gets a fresh run key (Dagster
    remembers run keys for the sensor's lifetime). ``open``: skills requested and not yet seen
    succeed (epoch seconds of the request); ``retries``: the sensor's re-requests of failed skills."""

    active: dict[str, str] = {}
    epochs: dict[str, int] = {}
    open: dict[str, float] = {}
    retries: dict[str, Retry] = {}
    batches: dict[str, list[str]] = {}  # batch id -> its skills still waiting for the batch run's outcome


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
            reason = CHANGED
        requests.append(dataset_request(skill, f"{skill.id}:{skill.fingerprint}:{epochs[skill.id]}", reason))
    fingerprints = {s.id: s.fingerprint for s in skills}
    nxt = SensorCursor(
        active=fingerprints,
        epochs=epochs,
        open={k: v for k, v in cursor.open.items() if k in fingerprints},
        # a retry count holds for one name and description: a change starts the skill afresh
        retries={k: v for k, v in cursor.retries.items() if cursor.active.get(k) == fingerprints.get(k)},
        batches=cursor.batches,
    )
    return new_partitions, requests, nxt


def dataset_request(skill: Skill, run_key: str, reason: str) -> dg.RunRequest:
    """A ``skill_dataset_job`` run of one skill: the run key says which version (and retry) of the
    skill it is for, the tags why it was requested and which skill it is, by name."""
    return dg.RunRequest(
        job_name=skill_dataset_job.name,
        partition_key=skill.id,
        run_key=run_key,
        tags={"skill_pipeline/reason": reason, **skill_tags(skill.name)},
    )


FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class LatestRun:
    """What the sensor needs of a skill's latest ``skill_dataset_job`` run."""

    run_id: str
    status: dg.DagsterRunStatus
    created: float
    ended: float | None
    dagster_will_retry: bool


@dataclass
class Census:
    """Where every active skill stands, for the tick's log and skip message."""

    active: int = 0
    done: int = 0
    requested: int = 0  # requested (this or an earlier tick), no run yet
    running: int = 0  # queued or in progress
    dagster_retrying: int = 0  # failed, Dagster's run retry pending
    backoff: dict[str, float] = field(default_factory=dict)  # failed, sensor retry due at (epoch s)
    gave_up: list[str] = field(default_factory=list)
    re_requested: int = 0

    def message(self, attempts: int) -> str:
        without = self.active - self.done
        if not without:
            return f"{self.active} active skills, every one with a dataset; none new or changed"
        backoff = f"{len(self.backoff)} failed and waiting for backoff"
        if self.backoff:
            due = datetime.fromtimestamp(min(self.backoff.values()), timezone.utc)
            backoff += f" (next retry {due.strftime('%H:%M:%S')} UTC)"
        gave_up = f"{len(self.gave_up)} failed after {attempts} sensor retries"
        if self.gave_up:
            gave_up += f" ({', '.join(sorted(self.gave_up)[:5])}{', ...' if len(self.gave_up) > 5 else ''})"
        return (
            f"{self.active} active skills: {self.done} with a dataset; {without} without: "
            f"{self.requested + self.running} pending (requested, queued or running), "
            f"{self.dagster_retrying} failed and being retried by Dagster, {backoff}, "
            f"{self.re_requested} re-requested this tick, {gave_up}"
        )


def _latest(record) -> LatestRun:
    run = record.dagster_run
    return LatestRun(
        run_id=run.run_id,
        status=run.status,
        created=record.create_timestamp.timestamp(),
        ended=record.end_time,
        dagster_will_retry=run.is_complete_and_waiting_to_retry,
    )


def latest_runs(instance: dg.DagsterInstance, job_name: str, tag: str, values: list[str]) -> dict[str, LatestRun]:
    """The newest run of ``job_name`` per value of ``tag``, in one query per ``RUN_QUERY_CHUNK`` values."""
    latest: dict[str, LatestRun] = {}
    ordered = sorted(values)
    for start in range(0, len(ordered), RUN_QUERY_CHUNK):
        chunk = ordered[start : start + RUN_QUERY_CHUNK]
        for record in instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, tags={tag: chunk})):
            key = record.dagster_run.tags.get(tag)  # records come newest first
            if key is not None and key not in latest:
                latest[key] = _latest(record)
    return latest


def batch_requests(requests: list[dg.RunRequest], skills: dict[str, Skill], now: float) -> tuple[list[dg.RunRequest], dict[str, list[str]]]:
    """Many requests of one tick as ``new_skills_batch`` runs (see the BATCH_* settings); few stay as they are."""
    minimum = int(os.environ.get(BATCH_MIN_VARIABLE) or BATCH_MIN_DEFAULT)
    runs = max(1, int(os.environ.get(BATCH_RUNS_VARIABLE) or BATCH_RUNS_DEFAULT))
    largest = max(1, int(os.environ.get(BATCH_MAX_VARIABLE) or BATCH_MAX_DEFAULT))
    # new (or never seen) skills only: a changed skill keeps a run of its own, its regeneration visible as such
    new = [r for r in requests if r.tags.get("skill_pipeline/reason") != CHANGED]
    if minimum <= 0 or len(new) < minimum:
        return requests, {}
    ids = [r.partition_key for r in new]
    size = min(largest, -(-len(ids) // runs))
    out: list[dg.RunRequest] = []
    batches: dict[str, list[str]] = {}
    for number, start in enumerate(range(0, len(ids), size), 1):
        members = ids[start : start + size]
        batch_id = f"b{int(now)}-{number}"
        batches[batch_id] = members
        digest = hashlib.sha256("|".join(f"{k}:{skills[k].fingerprint}" for k in members).encode()).hexdigest()[:16]
        out.append(
            dg.RunRequest(
                job_name=new_skills_batch_job.name,
                run_key=f"batch:{digest}",
                run_config=run_config(members),
                tags={BATCH_TAG: batch_id, "skill_pipeline/reason": f"{len(members)} new skills, batch {number} of "
                      f"{-(-len(ids) // size)}", "skill_pipeline/skills": ",".join(members)[:1000]},
            )
        )
    return out + [r for r in requests if r.tags.get("skill_pipeline/reason") == CHANGED], batches


def follow_up(
    cursor: SensorCursor,
    skills: list[Skill],
    without_dataset: set[str],
    requested_now: set[str],
    latest: dict[str, LatestRun],
    batch_runs: dict[str, LatestRun],
    now: float,
    base_seconds: float,
    attempts: int,
) -> tuple[list[dg.RunRequest], SensorCursor, Census]:
    """Re-requests for skills whose latest dataset run failed (after Dagster's own retries), with
    exponential backoff from the failure; the census of every active skill; the next cursor.

    A skill of a failed batch run that has no dataset gets its first retry at once, as a run of its own
    (batch runs are not retried by Dagster)."""
    census = Census(active=len(skills))
    open_, retries = dict(cursor.open), dict(cursor.retries)
    batch_of = {k: b for b, members in cursor.batches.items() for k in members}
    leaving: dict[str, set[str]] = {}  # batch id -> members whose outcome is known
    requests: list[dg.RunRequest] = []
    for skill in skills:
        if skill.id in requested_now:
            open_[skill.id] = now
            retries.pop(skill.id, None)
            census.requested += 1
            continue
        from_batch = False
        if skill.id in batch_of:
            batch_id = batch_of[skill.id]
            run = batch_runs.get(batch_id)
            if run is None:
                census.requested += 1
                continue
            if run.status not in FINISHED:
                census.running += 1
                continue
            leaving.setdefault(batch_id, set()).add(skill.id)
            if run.status == dg.DagsterRunStatus.SUCCESS or skill.id not in without_dataset:
                open_.pop(skill.id, None)
                census.done += 1
                continue
            from_batch = True
            run_status, failed_run, ended = run.status.value, run.run_id, run.ended or run.created
        elif skill.id not in open_ and skill.id not in without_dataset:
            census.done += 1
            continue
        else:
            run = latest.get(skill.id)
            if run is not None and skill.id in open_ and run.created < open_[skill.id] - 1:
                run = None  # a run from before the request: the requested one is not launched yet
            if run is None:
                if skill.id in open_:
                    census.requested += 1
                    continue
                # no dataset and no run at all (e.g. a deleted run): request it again, as a retry
                run_status, failed_run, ended = None, "none", now
            elif run.status == dg.DagsterRunStatus.SUCCESS:
                open_.pop(skill.id, None)
                retries.pop(skill.id, None)
                census.done += 1
                continue
            elif run.status not in FINISHED:
                census.running += 1
                continue
            elif run.dagster_will_retry:
                census.dagster_retrying += 1
                continue
            else:
                run_status, failed_run, ended = run.status.value, run.run_id, run.ended or run.created
        previous = retries.get(skill.id)
        if previous is not None and previous.after_run == failed_run:
            census.requested += 1  # re-requested already; its run is not launched yet
            continue
        attempt = (previous.attempt if previous else 0) + 1
        if attempt > attempts:
            census.gave_up.append(skill.id)
            continue
        due = ended + (0.0 if from_batch and attempt == 1 else base_seconds * 2 ** (attempt - 1))
        if now < due:
            census.backoff[skill.id] = due
            continue
        reason = (
            f"retry {attempt} of {attempts}: {'batch ' if from_batch else ''}run {failed_run} ended {run_status}"
            if run_status
            else f"retry {attempt} of {attempts}: no dataset and no run"
        )
        run_key = f"{skill.id}:{skill.fingerprint}:{cursor.epochs.get(skill.id, 0)}:retry{attempt}"
        requests.append(dataset_request(skill, run_key, reason))
        retries[skill.id] = Retry(attempt=attempt, after_run=failed_run)
        open_[skill.id] = now
        census.re_requested += 1
    active = {s.id for s in skills}
    batches = {}
    for batch_id, members in cursor.batches.items():
        left = [k for k in members if k in active and k not in leaving.get(batch_id, set())]
        if left:
            batches[batch_id] = left
    nxt = cursor.model_copy(update={"open": open_, "retries": retries, "batches": batches})
    return requests, nxt, census


def retry_settings() -> tuple[float, int]:
    base = float(os.environ.get(RETRY_BASE_VARIABLE) or RETRY_BASE_DEFAULT)
    attempts = int(os.environ.get(RETRY_ATTEMPTS_VARIABLE) or RETRY_ATTEMPTS_DEFAULT)
    return base, attempts


@dg.sensor(
    jobs=[skill_dataset_job, new_skills_batch_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lists active skills; adds a partition for each new one and requests its scenarios and dataset in "
        "the same tick (many new skills at once: a few new_skills_batch runs, each skill still materialised "
        "and checked on its own). On a fresh instance the first tick backfills every skill without a dataset "
        "(a skill whose dataset exists is adopted, not regenerated). A changed name or description, or a "
        "re-activated skill, gets a new run. A skill whose latest dataset run failed (after Dagster's run "
        "retries) is requested again with exponential backoff (SKILL_PIPELINE_RETRY_BASE_SECONDS, "
        "SKILL_PIPELINE_RETRY_MAX_ATTEMPTS); every tick logs how many skills are done, pending, failed."
    ),
)
def skill_sensor(context: dg.SensorEvaluationContext, skill_store: SkillStore) -> dg.SensorResult:
    cursor = SensorCursor.model_validate(json.loads(context.cursor)) if context.cursor else SensorCursor()
    skills = skill_store.list_skills(active_only=True)
    now = time.time()
    known = set(context.instance.get_dynamic_partitions(skills_partitions.name))
    new_partitions, requests, nxt = decide(cursor, skills, known)
    requested_now = {r.partition_key for r in requests}
    requests, new_batches = batch_requests(requests, {s.id: s for s in skills}, now)
    materialized = context.instance.get_materialized_partitions(dg.AssetKey("skill_dataset"))
    without_dataset = {s.id for s in skills if s.id not in materialized}
    in_batch = {k for members in nxt.batches.values() for k in members}
    to_inspect = [
        s.id for s in skills
        if s.id not in requested_now and s.id not in in_batch and (s.id in without_dataset or s.id in nxt.open)
    ]
    latest = latest_runs(context.instance, skill_dataset_job.name, PARTITION_TAG, to_inspect) if to_inspect else {}
    batch_runs = latest_runs(context.instance, new_skills_batch_job.name, BATCH_TAG, list(nxt.batches)) if nxt.batches else {}
    base, attempts = retry_settings()
    retry_requests, nxt, census = follow_up(
        nxt, skills, without_dataset, requested_now, latest, batch_runs, now, base, attempts
    )
    nxt.batches.update(new_batches)
    requests += retry_requests
    summary = census.message(attempts)
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[skills_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(nxt.model_dump(), separators=(",", ":")),
        skip_reason=None if requests else summary,
    )


# skills_overview's automation condition is evaluated by this sensor; declared (not left to Dagster's
# default sensor, which starts stopped) so that it runs as soon as the code location loads.
# Dagster 1.13.27 passes owners=None to SensorDefinition inside AutomationConditionSensorDefinition
# and warns about its own beta parameter on every load (a WARNING a newcomer reads as ours).
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`", category=dg.BetaWarning
)
overview_automation_sensor = dg.AutomationConditionSensorDefinition(
    "skills_overview_automation",
    target=dg.AssetSelection.assets("skills_overview"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes skills_overview after skill_dataset updates (dataset and promotion runs).",
)
