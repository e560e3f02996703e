"""Judge scores from Opik traces: a batched search of the project's judged traces, or one per challenge.

Used by ``OpikDatasetStore.judge_scores`` (see its docstring for the choice). Both lookups read the
same traces and average the same finite values of the judge's score per ``metadata.challenge_id``,
so they give identical scores; the batched one needs a request per 2,000 judged traces of the
project instead of one per challenge. Every search runs under the store's deadline (the SDK
retries a search answered 429 without end).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable

from skill_pipeline.resources.opik_support import (
    OPIK_TRACE_EXCLUDE,
    TimedOut,
    oql_string,
    run_within,
    status_of,
    trace_challenge_id,
)

if TYPE_CHECKING:
    from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore


def _judge_values(store: OpikDatasetStore, traces: Iterable[Any], wanted: set[str]) -> dict[str, list[float]]:
    """The judge's finite scores per challenge id, for the traces of the wanted challenges."""
    values: dict[str, list[float]] = {}
    for trace in traces:
        challenge_id = trace_challenge_id(trace)  # also guards against a filter the backend ignored
        if challenge_id not in wanted:
            continue
        for feedback in trace.feedback_scores or []:
            if feedback.name == store.judge_score_name and math.isfinite(float(feedback.value)):
                values.setdefault(challenge_id, []).append(float(feedback.value))
    return values


def _search_within(store: OpikDatasetStore, deadline: float, what: str, **search: Any) -> list[Any] | None:
    """One ``search_traces`` under the deadline; None when the project does not exist (404)."""
    client = store.client()
    found: list[Any] = []

    def run() -> None:
        found.extend(client.search_traces(project_name=store.project_name, exclude=OPIK_TRACE_EXCLUDE, **search))

    try:
        run_within(deadline, run, "judge-search")
    except TimedOut:
        raise store._error(
            what, detail=f"no answer within {store.search_timeout_seconds:g} s (Opik retries a 429 without end)"
        ) from None
    except Exception as exc:  # noqa: BLE001
        if status_of(exc) == 404:
            return None
        raise store._error(what, exc) from None
    return found


def judge_scores_batched(store: OpikDatasetStore, ids: list[str], deadline: float) -> dict[str, float] | None:
    """Every judged trace of the project in one paged search, matched to ``ids`` on the client;
    None when the lookup must be done per challenge instead (too many traces, an unquotable name)."""
    what = f"searching the judged traces of project {store.project_name} ({len(ids)} challenges)"
    if '"' in store.judge_score_name:
        return None  # not expressible as an OQL key: per-challenge searches filter on metadata only
    found = _search_within(
        store, deadline, what,
        filter_string=f'feedback_scores."{store.judge_score_name}" is_not_empty',
        max_results=store.judge_batch_max_traces + 1,
    )
    if found is None:
        store.logger.warning("Opik: project %s has no traces (404); %d challenges have no judge score",
                             store.project_name, len(ids))
        return {}
    if len(found) > store.judge_batch_max_traces:
        store.logger.warning(
            "Opik: project %s holds more than %d judged traces; looking up %d challenges one by one instead",
            store.project_name, store.judge_batch_max_traces, len(ids),
        )
        return None
    values = _judge_values(store, found, set(ids))
    return {cid: sum(v) / len(v) for cid in ids if (v := values.get(cid))}


def judge_scores_per_challenge(store: OpikDatasetStore, ids: list[str], deadline: float) -> dict[str, float]:
    """One search per challenge on ``metadata.challenge_id``, ``judge_concurrency`` at once."""
    missing_project: list[str] = []

    def score(challenge_id: str) -> float | None:
        what = f"searching the judge traces of challenge {challenge_id} (project {store.project_name})"
        found = _search_within(store, deadline, what, filter_string=f"metadata.challenge_id = {oql_string(challenge_id)}")
        if found is None:
            missing_project.append(challenge_id)
            return None
        values = _judge_values(store, found, {challenge_id}).get(challenge_id)
        return sum(values) / len(values) if values else None

    store.client()  # built once, before the threads share it
    with ThreadPoolExecutor(max_workers=min(store.judge_concurrency, len(ids)), thread_name_prefix="opik-judge") as pool:
        results = list(pool.map(score, ids))
    if missing_project:
        store.logger.warning(
            "Opik: project %s has no traces (404); %d challenges have no judge score",
            store.project_name,
            len(missing_project),
        )
    return {cid: value for cid, value in zip(ids, results) if value is not None}
