"""What the Opik adapters share: the item shape Opik stores, error description, and deadlines.

Opik's SDK retries a request answered 429 without end and cannot be told to stop, so every call
the pipeline makes runs under a deadline of ours (``run_within``). Error text is built from status
and body only, never from headers (they may echo the key). The SDK is imported inside functions.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

from pydantic import ValidationError

from skill_pipeline.core.sync import DatasetSyncError
from skill_pipeline.models import DatasetItem

# Opik reserves ``id``, ``source``, ``trace_id`` and ``span_id`` at the top of an item; everything
# else lands in the item's ``data``. The item ``source`` must be one Opik accepts (manual | trace |
# span | sdk); provenance (synthetic | real_world) stays in ``metadata.source``.
OPIK_ITEM_SOURCE = "sdk"
# Trace fields the judge-score search does not need (``start_time`` must stay: the SDK requires it).
OPIK_TRACE_EXCLUDE = [
    "input",
    "output",
    "tags",
    "usage",
    "error_info",
    "comments",
    "guardrails_validations",
    "span_feedback_scores",
]
RETRYABLE_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class OpikDatasetStoreError(DatasetSyncError):
    """An Opik call failed. The message names Opik and the dataset (or project), never the api key."""


class TimedOut(Exception):
    """An SDK call outlived our deadline (the SDK retries writes and searches answered 429 forever)."""


def describe(exc: BaseException) -> str:
    """A short account of an SDK or transport error, without headers (they may echo credentials)."""
    from opik.rest_api.core.api_error import ApiError

    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, default=str)
        return f"HTTP {exc.status_code}: {body[:300]}"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text[:300]}"


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt through a fresh dataset handle: overload, server errors, lost connections."""
    import httpx
    from opik.rest_api.core.api_error import ApiError

    if isinstance(exc, ApiError):
        return exc.status_code in RETRYABLE_HTTP_STATUS
    return isinstance(exc, (httpx.TransportError, ConnectionError))


def status_of(exc: BaseException) -> int | None:
    from opik.rest_api.core.api_error import ApiError

    return exc.status_code if isinstance(exc, ApiError) else None


def is_uuid7(value: str) -> bool:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return parsed.version == 7 and parsed.variant == uuid.RFC_4122


def trace_challenge_id(trace: Any) -> str | None:
    metadata = trace.metadata if isinstance(trace.metadata, dict) else {}
    value = metadata.get("challenge_id")
    return None if value is None else str(value)


def oql_string(value: str) -> str:
    """A double-quoted OQL string literal (OQL escapes a quote by doubling it)."""
    return '"' + value.replace('"', '""') + '"'


def to_opik_item(item: DatasetItem) -> dict[str, Any]:
    """The flat dict ``Dataset.insert`` takes: reserved keys at the top, the seed's shape in ``data``."""
    return {
        "id": item.id,
        "source": OPIK_ITEM_SOURCE,
        "input": item.input,
        "expected_output": item.expected_output,
        "metadata": item.metadata,
    }


def from_opik_item(row: dict[str, Any], dataset: str) -> DatasetItem:
    """An item as ``Dataset.get_items`` returns it (``id`` plus the item's data) back into ours."""
    try:
        return DatasetItem(
            id=str(row["id"]),
            input=row.get("input"),
            expected_output=row.get("expected_output"),
            metadata=row.get("metadata"),
        )
    except (ValidationError, KeyError, TypeError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else repr(exc)
        raise OpikDatasetStoreError(
            f"Opik: item {row.get('id')} of dataset {dataset} is not in the pipeline's shape "
            f"(input, expected_output, metadata with source and item_id): {reason}"
        ) from None


def run_within(deadline: float, operation: Callable[[], None], label: str) -> None:
    """Run ``operation`` on a daemon thread and give up on it at ``deadline``.

    The SDK cannot be told to stop a write it is retrying, so a timed-out write may still land
    later; it is an upsert of what we wanted written, and the next sync reads back and re-diffs.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimedOut()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            operation()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"opik-{label}", daemon=True)
    worker.start()
    worker.join(remaining)
    if worker.is_alive():
        raise TimedOut()
    if "error" in outcome:
        raise outcome["error"]
