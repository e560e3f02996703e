"""An experiment in Opik: ``opik.evaluate`` over a dataset, scored with ``core.metrics``.

Kept apart from the dataset adapter because it is the one place that drives Opik's evaluation
engine, with its own traps (global client, silently dropped batches), each handled below.
"""

from __future__ import annotations

import contextvars
import math
import threading
from typing import TYPE_CHECKING, Any

from skill_pipeline.core.experiment import ExperimentRecord, ExperimentTask, ScoreRow, score_row
from skill_pipeline.core.metrics import score_values
from skill_pipeline.models import DatasetItem
from skill_pipeline.resources.opik_support import from_opik_item

if TYPE_CHECKING:
    from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore


def run_opik_experiment(
    store: "OpikDatasetStore",
    name: str,
    items: list[DatasetItem],
    task: ExperimentTask,
    experiment_name: str,
    experiment_config: dict[str, Any],
    threads: int,
) -> ExperimentRecord:
    """``opik.evaluate`` over the dataset, scored with ``core.metrics``, recorded as an Opik experiment.

    Why it is more than one call:

    * ``opik.evaluate`` takes no client: it uses the *global* one, which, when unset, is built
      from the environment and ``~/.opik.config`` -- possibly another host or workspace, and
      without our key. Ours is installed for this call only, in a copied context
      (``set_global_client(..., context_wise=True)``), so it leaks into no other thread or later
      call; the evaluation engine hands it to its own worker threads.
    * Traces, spans, feedback scores and experiment items go out in background batches; a batch
      the backend refuses three times is dropped, and the only sign is the SDK's data-loss
      tracker. ``evaluate`` flushes by itself and ignores the outcome, so a ``flush()`` after it
      would only see drops from then on: the drop count is read before the evaluation and
      after our own flush, and any drop (or a flush that did not drain) fails the call.
    * The task receives the item as Opik holds it (its data plus ``id``); it is turned back
      into our ``DatasetItem`` (an item not in our shape fails, naming its id). What the task
      raises (the LLM failing for good, say) is re-raised as it is: it names its own service
      and is no Opik failure.
    * ``project_name`` is deprecated in ``evaluate`` and ignored (with a warning) when the
      dataset belongs to a project, as ours do: it is passed only for a dataset without one.

    The experiment covers the dataset's latest version, read by ``evaluate`` itself; the rows
    are built from what it evaluated (a warning says when that differs from ``items``).
    """
    import opik

    from skill_pipeline.resources.opik_metrics import opik_metrics

    what = f"running experiment {experiment_name} on dataset {name} (project {store.project_name})"
    client = store.client()
    dataset = store._require(name, "running an experiment on")
    lock = threading.Lock()
    evaluated: dict[str, DatasetItem] = {}
    task_failures: list[Exception] = []

    def opik_task(row: dict[str, Any]) -> dict[str, Any]:
        try:
            item = from_opik_item(row, name)
            with lock:
                evaluated[item.id] = item
            return task(item)
        except Exception as exc:
            with lock:
                task_failures.append(exc)
            raise

    def evaluate() -> Any:
        opik.set_global_client(client, context_wise=True)
        return opik.evaluate(
            dataset=dataset,
            task=opik_task,
            scoring_metrics=opik_metrics(),
            experiment_name=experiment_name,
            experiment_config=dict(experiment_config),
            project_name=None if getattr(dataset, "project_name", None) else store.project_name,
            task_threads=max(1, threads),
            verbose=0,
        )

    with store._errors(f"reading the SDK's delivery report before {what}"):
        drops_before = client.get_errors_report().total_dropped_messages
    failure: Exception | None = None
    result: Any = None
    try:
        result = contextvars.copy_context().run(evaluate)
    except Exception as exc:  # noqa: BLE001 - sorted below into the task's own error or an Opik one
        with lock:
            failure = task_failures[0] if task_failures else store._error(what, exc)
    if failure is not None:
        # Raised outside the ``except`` block: the SDK's exception is not even the implicit context.
        raise failure

    flushed = client.flush(timeout=max(1, math.ceil(store.write_timeout_seconds)))
    report = client.get_errors_report()
    dropped = report.total_dropped_messages - drops_before
    if not flushed or dropped > 0:
        # Message types and statuses only: the SDK's ``detail`` of a drop is the error's text.
        recent = report.failures[-dropped:] if dropped > 0 else ()
        lost = sorted(
            {info.message_type + (f" (HTTP {info.status_code})" if info.status_code else "") for info in recent}
        )
        raise store._error(
            what,
            detail=(
                f"the SDK did not deliver everything to Opik (flush returned {flushed}; {max(dropped, 0)} "
                f"batches dropped after its retries{': ' + ', '.join(lost) if lost else ''}); experiment "
                f"{result.experiment_id} is incomplete in Opik"
            ),
        )

    order = {item.id: position for position, item in enumerate(items)}
    rows: list[tuple[int, str, ScoreRow]] = []
    for test_result in result.test_results:
        case = test_result.test_case
        item_id = str(case.dataset_item_id)
        item = evaluated.get(item_id) or from_opik_item({**case.dataset_item_content, "id": item_id}, name)
        row = score_row(item, case.task_output or {}, score_values(test_result.score_results))
        rows.append((order.get(item_id, len(order)), item_id, row))
    rows.sort(key=lambda entry: (entry[0], entry[1]))
    evaluated_ids = {entry[1] for entry in rows}
    if evaluated_ids != set(order):
        store.logger.warning(
            "Opik: experiment %s evaluated %d items of dataset %s, %d of them not among the %d read "
            "before it (the dataset changed in between)",
            experiment_name,
            len(evaluated_ids),
            name,
            len(evaluated_ids - set(order)),
            len(order),
        )
    location = result.experiment_url or f"Opik experiment {result.experiment_id} (project {store.project_name})"
    return ExperimentRecord(
        experiment_id=str(result.experiment_id),
        experiment_name=str(result.experiment_name or experiment_name),
        location=location,
        rows=[entry[2] for entry in rows],
    )
