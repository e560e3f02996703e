"""A strict loopback fake of the Opik REST endpoints the ``opik`` 2.2 SDK calls for datasets and traces.

Why a hand-made server rather than ``pytest-httpserver``: the faults worth testing are a connection
dropped without an answer (before or after the write was applied), gzip-encoded bodies, NDJSON
streams and slow answers; a bare ``ThreadingHTTPServer`` gives byte-level control over all of them.

What it serves was logged from the SDK itself (opik 2.2.122, base URL ``http://host:port/api``):

- ``POST v1/private/datasets/retrieve`` ``{"dataset_name", "project_name"}``: DatasetPublic (with
  ``project_id``, which the SDK resolves through ``GET v1/private/projects/{id}``), 404 if missing.
- ``POST v1/private/datasets`` ``{"name", "project_name", "description"}``: 201; 409 on a second
  create. A dataset belongs to a project, created on first use; ``POST v1/private/projects/retrieve``
  ``{"name"}`` follows a create (the SDK logs the dataset's URL).
- ``PUT v1/private/datasets/items``, gzip body ``{"dataset_name", "project_name", "batch_group_id",
  "items": [{"id", "trace_id", "span_id", "source", "data", ...}]}``, at most 1000 items a body;
  batches sharing a ``batch_group_id`` make one new version.
- ``GET v1/private/datasets/{id}/versions?page=1&size=1``: newest first; reads pin to ``[0]``.
- ``GET v1/private/datasets/{id}/items?page&size=2000&version=<hash>``: ``{"content", "page",
  "size", "total"}``, newest id first; the SDK plans its pages from ``total``.
- ``POST v1/private/datasets/items/stream`` (cursor ``last_retrieved_id``, ``steam_limit``): NDJSON,
  read by the deduplicating insert to rebuild its content hashes.
- ``POST v1/private/datasets/items/delete`` ``{"item_ids", "batch_group_id"}``: not scoped to a
  dataset (the backend deletes those ids wherever they are).
- ``POST v1/private/traces/search`` ``{"project_name", "filters": [{"field", "operator", "key",
  "value", "type"}], "last_retrieved_id", "limit", "truncate", "exclude"}``: NDJSON, newest first.
- ``GET is-alive/ver`` (probed before a parallel insert) and ``GET is-alive/ping`` (the SDK's
  connection monitor).

What ``opik.evaluate`` sends (logged from opik 2.2.122, in this order, the last four from the
SDK's background sender, in batches, in whatever order its queues drain):

- ``POST v1/private/experiments`` ``{"id", "dataset_name", "project_name", "name", "metadata",
  "type": "regular", "evaluation_method": "dataset", "dataset_version_id", ...}``: 201. ``metadata`` is
  the ``experiment_config`` plus the SDK's own ``_opik_resume`` key.
- ``POST v1/private/datasets/items/stream`` to read the items evaluated (see above).
- ``POST v1/private/traces/batch`` ``{"traces": [TraceWrite]}`` and ``POST v1/private/spans/batch``
  ``{"spans": [SpanWrite]}``: one ``evaluation_task`` trace per item (its ``input`` is the item's
  content), spans for the task and for the metrics' argument checks; 204.
- ``PUT v1/private/traces/feedback-scores`` ``{"scores": [{"id": <trace id>, "name", "value",
  "source": "sdk", "project_name", ...}]}``: 204. It may arrive *before* the trace it scores.
- ``POST v1/private/experiments/items`` ``{"experiment_items": [{"id", "experiment_id",
  "dataset_item_id", "trace_id", "project_name", "execution_policy"}]}``: 204.
- ``POST v1/private/experiments/finish`` ``{"ids": [...]}``: 204, after the SDK's own flush.

The SDK sends the api key bare in ``Authorization`` and the workspace in ``Comet-Workspace``;
JSON bodies of 256 bytes or more are gzipped (``Content-Encoding: gzip``).

Strictness: an unknown path or method answers 404 and is recorded as a violation; a malformed body
(missing fields, unknown fields, ids that are not UUID version 7, an unknown item ``source``, filters
the fake does not model) answers 400 like the real backend and is recorded as a violation too, so a
test that swallows the error still fails at teardown. A missing dataset (404) and a second create
(409) are protocol, not violations.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

OPIK_BACKEND_VERSION = "2.2.122"
ITEM_SOURCES = ("manual", "trace", "span", "sdk")
TRACE_EXCLUDABLE = frozenset(
    "name start_time end_time input output metadata tags error_info usage created_at created_by "
    "last_updated_by feedback_scores span_feedback_scores comments guardrails_validations "
    "total_estimated_cost span_count llm_span_count has_tool_spans duration ttft thread_id "
    "visibility_mode providers experiment annotation_queues source environment".split()
)

# Operation names, for fault injection and for reading the request log.
OPERATIONS = (
    "is_alive_ver",
    "is_alive_ping",
    "create_dataset",
    "retrieve_dataset",
    "get_dataset",
    "write_items",
    "read_items",
    "stream_items",
    "delete_items",
    "list_versions",
    "retrieve_project",
    "get_project",
    "search_traces",
    "create_experiment",
    "create_experiment_items",
    "finish_experiments",
    "create_traces",
    "create_spans",
    "score_traces",
)
TRACE_SOURCES = ("sdk", "experiment", "playground", "optimization", "evaluator")
SPAN_TYPES = ("general", "tool", "llm", "guardrail")
FEEDBACK_SOURCES = ("ui", "sdk", "online_scoring")
EXPERIMENT_TYPES = ("regular", "trial", "mini-batch", "mutation")
EXPERIMENT_METHODS = ("dataset", "evaluation_suite")
EXPERIMENT_STATUSES = ("running", "completed", "cancelled", "failed")
# Field names of the SDK's write models (``opik.rest_api.types``): anything else is refused.
TRACE_WRITE_FIELDS = frozenset(
    "id project_name name start_time end_time input output metadata tags error_info last_updated_at ttft "
    "thread_id source environment".split()
)
SPAN_WRITE_FIELDS = frozenset(
    "id project_name trace_id parent_span_id name type start_time end_time input output metadata model provider "
    "tags usage error_info last_updated_at total_estimated_cost total_estimated_cost_version ttft source "
    "environment".split()
)
FEEDBACK_WRITE_FIELDS = frozenset(
    "project_name project_id name category_name value reason source author source_queue_id id".split()
)
EXPERIMENT_WRITE_FIELDS = frozenset(
    "id dataset_name project_id project_name name metadata tags type evaluation_method optimization_id status "
    "experiment_scores prompt_version prompt_versions dataset_version_id".split()
)
EXPERIMENT_ITEM_WRITE_FIELDS = frozenset(
    "id experiment_id dataset_item_id trace_id project_id project_name input output trace_metadata "
    "feedback_scores comments total_estimated_cost duration usage created_at last_updated_at created_by "
    "last_updated_by trace_visibility_mode description execution_policy assertion_results status".split()
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_uuid7_lock = threading.Lock()
_uuid7_last = 0


def uuid7() -> str:
    """A fresh UUID version 7, strictly increasing within this process (ids sort by creation)."""
    global _uuid7_last
    with _uuid7_lock:
        value = (int(time.time() * 1000) << 80) | (0x7 << 76) | (0b10 << 62)
        value |= secrets.randbits(12) << 64 | secrets.randbits(62)
        if value <= _uuid7_last:
            # Same millisecond: keep the time bits and step the random part, preserving v7 layout.
            value = _uuid7_last + 1
            value = (value & ~(0xF << 76)) | (0x7 << 76)
            value = (value & ~(0b11 << 62)) | (0b10 << 62)
        _uuid7_last = value
        return str(uuid.UUID(int=value))


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_uuid7(value: Any) -> bool:
    """What the backend demands of item ids: a UUID whose version nibble is 7 (RFC 9562 variant)."""
    if not is_uuid(value):
        return False
    parsed = uuid.UUID(value)
    return parsed.version == 7 and parsed.variant == uuid.RFC_4122


class BadRequest(Exception):
    """A request the real backend would reject with 400; the fake records it as a violation."""


def _unique_uuid7_ids(rows: list[dict[str, Any]], kind: str) -> None:
    """The backend's rule for a batch of traces or spans: every id a version 7 UUID, none twice."""
    seen: set[str] = set()
    for index, row in enumerate(rows):
        where = f"{kind}s[{index}].id"
        if not is_uuid7(row.get("id")):
            raise BadRequest(f"{where} {row.get('id')!r}: {kind} id must be a version 7 UUID")
        if row["id"] in seen:
            raise BadRequest(f"{where} {row['id']!r} appears twice in one batch")
        seen.add(row["id"])


@dataclass
class Fault:
    """What the next matching request gets instead of (or before) its normal answer.

    ``status``: answer this status (500, 429, ...) without touching state.
    ``drop``: close the connection without answering, before applying the request.
    ``drop_after``: apply the request, then close the connection without answering (the client
    cannot tell whether it landed; a retry must not duplicate).
    ``slow``: sleep ``delay`` seconds, then answer normally.
    """

    kind: str
    status: int = 500
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    operation: str
    method: str
    path: str
    query: dict[str, str]
    body: Any
    gzipped: bool
    status: int | None = None
    fault: str | None = None


@dataclass
class _Version:
    id: str
    version_hash: str
    version_name: str
    batch_group_id: str | None
    items: dict[str, dict[str, Any]]
    created_at: str
    items_added: int = 0
    items_modified: int = 0
    items_deleted: int = 0


@dataclass
class _Dataset:
    id: str
    name: str
    project_id: str | None
    description: str | None
    created_at: str
    versions: list[_Version] = field(default_factory=list)  # newest first

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return self.versions[0].items if self.versions else {}


class FakeOpik:
    """In-memory Opik backend for datasets, projects and traces, with fault injection.

    Use through the ``opik_fake`` fixture, or ``start()``/``stop()``. Inspect ``items(name)``,
    ``versions(name)``, ``requests`` and ``violations``; load traces with ``add_trace``.
    """

    def __init__(self, api_key: str | None = None, workspace: str | None = None) -> None:
        self.api_key = api_key
        self.workspace = workspace
        self.violations: list[str] = []
        self.requests: list[RecordedRequest] = []
        # Highest number of requests of one operation served at the same time (concurrency bounds).
        self.max_in_flight: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._faults: dict[str, list[Fault]] = {}
        self._projects: dict[str, dict[str, Any]] = {}  # id -> project
        self._datasets: dict[str, _Dataset] = {}  # id -> dataset
        self._traces: list[dict[str, Any]] = []
        self._trace_index: dict[str, dict[str, Any]] = {}  # id -> the trace dict held in ``_traces``
        # Feedback scores that arrived before their trace (the SDK's queues drain in any order).
        self._pending_scores: dict[str, list[dict[str, Any]]] = {}
        self._spans: dict[str, dict[str, Any]] = {}
        self._experiments: dict[str, dict[str, Any]] = {}
        self._experiment_items: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeOpik":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-opik", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """What ``OPIK_URL_OVERRIDE`` is set to: the SDK appends ``v1/private/...`` to it."""
        assert self._server is not None, "the fake Opik server is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    # ------------------------------------------------------------------ fixture API
    def inject(
        self,
        operation: str,
        kind: str = "status",
        *,
        times: int = 1,
        status: int = 500,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fault for the next ``times`` requests of ``operation`` (one of ``OPERATIONS``)."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; known: {OPERATIONS}")
        if kind not in ("status", "drop", "drop_after", "slow"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            queue = self._faults.setdefault(operation, [])
            queue.extend(Fault(kind=kind, status=status, delay=delay, headers=dict(headers or {})) for _ in range(times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self, operation: str) -> int:
        with self._lock:
            return len(self._faults.get(operation, []))

    def add_trace(
        self,
        project: str,
        metadata: dict[str, Any],
        feedback_scores: dict[str, float] | list[tuple[str, float]] | None = None,
        name: str = "judge",
    ) -> str:
        """Store a trace (as the app's judge would log one) with its feedback scores; returns its id."""
        scores = feedback_scores.items() if isinstance(feedback_scores, dict) else (feedback_scores or [])
        with self._lock:
            project_id = self._project_by_name(project, create=True)["id"]
            trace_id = uuid7()
            stamp = now_iso()
            self._store_trace(
                {
                    "id": trace_id,
                    "project_id": project_id,
                    "name": name,
                    "start_time": stamp,
                    "end_time": stamp,
                    "input": {"prompt": "judge the challenge"},
                    "output": {"verdict": "ok"},
                    "metadata": copy.deepcopy(metadata),
                    "tags": [],
                    "created_at": stamp,
                    "last_updated_at": stamp,
                    "feedback_scores": [
                        {"name": n, "value": float(v), "source": "sdk", "created_at": stamp, "last_updated_at": stamp}
                        for n, v in scores
                    ],
                }
            )
            return trace_id

    def items(self, dataset_name: str, project: str | None = None) -> list[dict[str, Any]]:
        """Stored items of the dataset's latest version, newest id first (as the backend lists them)."""
        with self._lock:
            dataset = self._find_dataset(dataset_name, project)
            if dataset is None:
                raise KeyError(f"no dataset {dataset_name!r} in the fake")
            return [copy.deepcopy(dataset.items[i]) for i in sorted(dataset.items, reverse=True)]

    def versions(self, dataset_name: str, project: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            dataset = self._find_dataset(dataset_name, project)
            if dataset is None:
                raise KeyError(f"no dataset {dataset_name!r} in the fake")
            return [self._version_public(dataset, v, i == 0) for i, v in enumerate(dataset.versions)]

    def dataset_names(self) -> list[str]:
        with self._lock:
            return sorted(d.name for d in self._datasets.values())

    def create_dataset_directly(self, name: str, project: str) -> None:
        """Make a dataset appear as if another run created it (for racing-create tests)."""
        with self._lock:
            project_id = self._project_by_name(project, create=True)["id"]
            dataset = _Dataset(id=uuid7(), name=name, project_id=project_id, description=None, created_at=now_iso())
            self._datasets[dataset.id] = dataset

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def experiments(self, dataset_name: str | None = None) -> list[dict[str, Any]]:
        """Experiments as created (oldest first), each with ``items``: its experiment items."""
        with self._lock:
            found = [e for e in self._experiments.values() if dataset_name in (None, e["dataset_name"])]
            out = []
            for experiment in sorted(found, key=lambda e: e["id"]):
                record = copy.deepcopy(experiment)
                record["items"] = [
                    copy.deepcopy(i) for i in self._experiment_items.values() if i["experiment_id"] == experiment["id"]
                ]
                out.append(record)
            return out

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One stored trace with its feedback scores, or None."""
        with self._lock:
            stored = self._trace_index.get(trace_id)
            return copy.deepcopy(stored) if stored is not None else None

    def traces(self, project: str | None = None) -> list[dict[str, Any]]:
        """Stored traces (of ``project``, if given), with their feedback scores."""
        with self._lock:
            project_id = None
            if project is not None:
                project_id = next((p["id"] for p in self._projects.values() if p["name"] == project), "")
            return [copy.deepcopy(t) for t in self._traces if project is None or t["project_id"] == project_id]

    def spans(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(s) for s in self._spans.values() if trace_id in (None, s["trace_id"])]

    def take_violations(self) -> list[str]:
        """The violations so far, cleared: for a test that provokes one on purpose."""
        with self._lock:
            taken, self.violations = self.violations, []
            return taken

    # ------------------------------------------------------------------ internals
    def _violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def _store_trace(self, trace: dict[str, Any]) -> None:
        """Insert or replace a trace by id (a retried batch must not duplicate), keeping its scores
        and taking those that arrived before it. Call with the lock held."""
        previous = self._trace_index.get(trace["id"])
        scores = list(previous["feedback_scores"]) if previous is not None else list(trace.get("feedback_scores") or [])
        for score in self._pending_scores.pop(trace["id"], []):
            scores = [s for s in scores if s["name"] != score["name"]] + [score]
        trace["feedback_scores"] = scores
        if previous is not None:
            trace["created_at"] = previous["created_at"]
            self._traces[self._traces.index(previous)] = trace
        else:
            self._traces.append(trace)
        self._trace_index[trace["id"]] = trace

    def _next_fault(self, operation: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def _project_by_name(self, name: str, create: bool) -> dict[str, Any]:
        for project in self._projects.values():
            if project["name"] == name:
                return project
        if not create:
            raise KeyError(name)
        stamp = now_iso()
        project = {"id": uuid7(), "name": name, "visibility": "private", "created_at": stamp, "last_updated_at": stamp}
        self._projects[project["id"]] = project
        return project

    def _find_dataset(self, name: str, project: str | None) -> _Dataset | None:
        project_id = None
        if project is not None:
            project_id = next((p["id"] for p in self._projects.values() if p["name"] == project), "")
        exact = [d for d in self._datasets.values() if d.name == name and (project is None or d.project_id == project_id)]
        if exact:
            return exact[0]
        # The backend falls back to a workspace-wide lookup by name (the SDK's ``from_public`` then
        # resolves the dataset's real project from ``project_id``).
        return next((d for d in self._datasets.values() if d.name == name), None)

    def _dataset_public(self, dataset: _Dataset) -> dict[str, Any]:
        public: dict[str, Any] = {
            "id": dataset.id,
            "name": dataset.name,
            "type": "dataset",
            "visibility": "private",
            "created_at": dataset.created_at,
            "last_updated_at": dataset.versions[0].created_at if dataset.versions else dataset.created_at,
            "created_by": "admin",
            "last_updated_by": "admin",
            "dataset_items_count": len(dataset.items),
            "experiment_count": 0,
            "status": "completed",
        }
        if dataset.project_id is not None:
            public["project_id"] = dataset.project_id
        if dataset.description is not None:
            public["description"] = dataset.description
        if dataset.versions:
            latest = dataset.versions[0]
            public["latest_version"] = {
                "id": latest.id,
                "version_hash": latest.version_hash,
                "version_name": latest.version_name,
            }
        return public

    def _version_public(self, dataset: _Dataset, version: _Version, is_latest: bool) -> dict[str, Any]:
        return {
            "id": version.id,
            "dataset_id": dataset.id,
            "version_hash": version.version_hash,
            "version_name": version.version_name,
            "is_latest": is_latest,
            "items_total": len(version.items),
            "items_added": version.items_added,
            "items_modified": version.items_modified,
            "items_deleted": version.items_deleted,
            "tags": ["latest"] if is_latest else [],
            "created_at": version.created_at,
            "created_by": "admin",
            "last_updated_at": version.created_at,
            "last_updated_by": "admin",
        }

    def _mutate(
        self,
        dataset: _Dataset,
        batch_group_id: str | None,
        change: Callable[[dict[str, Any]], tuple[int, int, int]],
    ) -> None:
        """Apply a change to the dataset's items as a version: batches of one group share a version,
        a write without a group mutates the latest one, anything else makes a new version."""
        latest = dataset.versions[0] if dataset.versions else None
        if latest is not None and (batch_group_id is None or latest.batch_group_id == batch_group_id):
            added, modified, deleted = change(latest.items)
            latest.items_added += added
            latest.items_modified += modified
            latest.items_deleted += deleted
            return
        items = copy.deepcopy(latest.items) if latest else {}
        added, modified, deleted = change(items)
        dataset.versions.insert(
            0,
            _Version(
                id=uuid7(),
                version_hash=secrets.token_hex(8),
                version_name=f"v{len(dataset.versions) + 1}",
                batch_group_id=batch_group_id,
                items=items,
                created_at=now_iso(),
                items_added=added,
                items_modified=modified,
                items_deleted=deleted,
            ),
        )

    # ------------------------------------------------------------------ endpoints
    def route(self, method: str, path: str) -> tuple[str, Callable[..., tuple[int, Any]], tuple[str, ...]] | None:
        for pattern_method, pattern, operation, handler in self._routes():
            if method != pattern_method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                return operation, handler, match.groups()
        return None

    def _routes(self) -> Iterator[tuple[str, str, str, Callable[..., tuple[int, Any]]]]:
        uuid_re = r"([0-9a-fA-F-]{36})"
        yield "GET", r"/api/is-alive/ver", "is_alive_ver", self._is_alive_ver
        yield "GET", r"/api/is-alive/ping", "is_alive_ping", self._is_alive_ping
        yield "POST", r"/api/v1/private/datasets", "create_dataset", self._create_dataset
        yield "POST", r"/api/v1/private/datasets/retrieve", "retrieve_dataset", self._retrieve_dataset
        yield "PUT", r"/api/v1/private/datasets/items", "write_items", self._write_items
        yield "POST", r"/api/v1/private/datasets/items/stream", "stream_items", self._stream_items
        yield "POST", r"/api/v1/private/datasets/items/delete", "delete_items", self._delete_items
        yield "GET", rf"/api/v1/private/datasets/{uuid_re}", "get_dataset", self._get_dataset
        yield "GET", rf"/api/v1/private/datasets/{uuid_re}/items", "read_items", self._read_items
        yield "GET", rf"/api/v1/private/datasets/{uuid_re}/versions", "list_versions", self._list_versions
        yield "POST", r"/api/v1/private/projects/retrieve", "retrieve_project", self._retrieve_project
        yield "GET", rf"/api/v1/private/projects/{uuid_re}", "get_project", self._get_project
        yield "POST", r"/api/v1/private/traces/search", "search_traces", self._search_traces
        yield "POST", r"/api/v1/private/traces/batch", "create_traces", self._create_traces
        yield "POST", r"/api/v1/private/spans/batch", "create_spans", self._create_spans
        yield "PUT", r"/api/v1/private/traces/feedback-scores", "score_traces", self._score_traces
        yield "POST", r"/api/v1/private/experiments", "create_experiment", self._create_experiment
        yield "POST", r"/api/v1/private/experiments/items", "create_experiment_items", self._create_experiment_items
        yield "POST", r"/api/v1/private/experiments/finish", "finish_experiments", self._finish_experiments

    @staticmethod
    def _object(body: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
        unknown = set(body) - allowed
        if unknown:
            raise BadRequest(f"Unrecognized field(s) {sorted(unknown)}")
        missing = [k for k in sorted(required) if body.get(k) in (None, "")]
        if missing:
            raise BadRequest(f"{', '.join(missing)} must not be blank")
        return body

    @staticmethod
    def _int_param(query: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
        raw = query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {name}={raw!r} is not an integer") from None
        if value < minimum:
            raise BadRequest(f"query parameter {name} must be >= {minimum}, got {value}")
        return value

    def _is_alive_ver(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"version": OPIK_BACKEND_VERSION}

    def _is_alive_ping(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {"healthy": True}

    def _create_dataset(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(
            body,
            {"id", "name", "project_id", "project_name", "type", "visibility", "tags", "description"},
            {"name"},
        )
        if body.get("id") is not None and not is_uuid7(body["id"]):
            raise BadRequest(f"dataset id {body['id']!r} must be a version 7 UUID")
        if body.get("type") not in (None, "dataset", "evaluation_suite"):
            raise BadRequest(f"unknown dataset type {body['type']!r}")
        with self._lock:
            project_id = None
            if body.get("project_id"):
                if body["project_id"] not in self._projects:
                    return 404, {"errors": ["Project not found"]}
                project_id = body["project_id"]
            elif body.get("project_name"):
                project_id = self._project_by_name(body["project_name"], create=True)["id"]
            if any(d.name == body["name"] and d.project_id == project_id for d in self._datasets.values()):
                return 409, {"errors": ["Dataset already exists"]}
            dataset = _Dataset(
                id=body.get("id") or uuid7(),
                name=body["name"],
                project_id=project_id,
                description=body.get("description"),
                created_at=now_iso(),
            )
            self._datasets[dataset.id] = dataset
        return 201, None

    def _retrieve_dataset(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(body, {"dataset_name", "project_name"}, {"dataset_name"})
        with self._lock:
            dataset = self._find_dataset(body["dataset_name"], body.get("project_name"))
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            return 200, self._dataset_public(dataset)

    def _get_dataset(self, query: dict[str, str], body: Any, dataset_id: str) -> tuple[int, Any]:
        with self._lock:
            dataset = self._datasets.get(dataset_id)
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            return 200, self._dataset_public(dataset)

    def _write_items(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(
            body,
            {
                "dataset_name",
                "dataset_id",
                "project_name",
                "project_id",
                "items",
                "batch_group_id",
                "copy_from_dataset_id",
                "copy_from_version_id",
            },
            {"items"},
        )
        if not body.get("dataset_name") and not body.get("dataset_id"):
            raise BadRequest("dataset_name or dataset_id must be provided")
        if body.get("copy_from_dataset_id") or body.get("copy_from_version_id"):
            raise BadRequest("copy_from_* is not modelled by the fake")
        if body.get("batch_group_id") is not None and not is_uuid7(body["batch_group_id"]):
            raise BadRequest(f"batch_group_id {body['batch_group_id']!r} must be a version 7 UUID")
        items = body["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= 1000:
            raise BadRequest("items must hold between 1 and 1000 items")
        allowed = {"id", "trace_id", "span_id", "source", "data", "description", "tags", "evaluators", "execution_policy"}
        seen: set[str] = set()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest(f"items[{index}] must be an object")
            unknown = set(item) - allowed
            if unknown:
                raise BadRequest(f"items[{index}]: unrecognized field(s) {sorted(unknown)}")
            if item.get("id") is not None and not is_uuid7(item["id"]):
                raise BadRequest(f"items[{index}].id {item['id']!r}: dataset item id must be a version 7 UUID")
            if item.get("id") in seen:
                raise BadRequest(f"items[{index}].id {item['id']!r} appears twice in one batch")
            if item.get("id") is not None:
                seen.add(item["id"])
            for key in ("trace_id", "span_id"):
                if item.get(key) is not None and not is_uuid(item[key]):
                    raise BadRequest(f"items[{index}].{key} {item[key]!r} is not a UUID")
            if item.get("source") not in ITEM_SOURCES:
                raise BadRequest(f"items[{index}].source {item.get('source')!r} must be one of {list(ITEM_SOURCES)}")
            if not isinstance(item.get("data"), dict):
                raise BadRequest(f"items[{index}].data must be a JSON object")
        with self._lock:
            if body.get("dataset_id"):
                dataset = self._datasets.get(body["dataset_id"])
            else:
                dataset = self._find_dataset(body["dataset_name"], body.get("project_name"))
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            stamp = now_iso()

            def upsert(stored: dict[str, dict[str, Any]]) -> tuple[int, int, int]:
                added = modified = 0
                for item in items:
                    item_id = item.get("id") or uuid7()
                    previous = stored.get(item_id)
                    record = {k: v for k, v in item.items() if v is not None}
                    record.update(
                        id=item_id,
                        dataset_item_id=item_id,
                        dataset_id=dataset.id,
                        created_at=previous["created_at"] if previous else stamp,
                        last_updated_at=stamp,
                        created_by="admin",
                        last_updated_by="admin",
                    )
                    stored[item_id] = copy.deepcopy(record)
                    if previous is None:
                        added += 1
                    else:
                        modified += 1
                return added, modified, 0

            self._mutate(dataset, body.get("batch_group_id"), upsert)
        return 204, None

    def _read_items(self, query: dict[str, str], body: Any, dataset_id: str) -> tuple[int, Any]:
        unknown = set(query) - {"page", "size", "version", "filters", "truncate"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s) {sorted(unknown)}")
        if query.get("filters"):
            raise BadRequest("item filters are not modelled by the fake")
        page = self._int_param(query, "page", 1)
        size = self._int_param(query, "size", 10)
        with self._lock:
            dataset = self._datasets.get(dataset_id)
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            items = self._version_items(dataset, query.get("version"))
            if items is None:
                return 404, {"errors": [f"Dataset version not found: {query.get('version')}"]}
            ordered = [copy.deepcopy(items[i]) for i in sorted(items, reverse=True)]
        start = (page - 1) * size
        return 200, {"content": ordered[start : start + size], "page": page, "size": size, "total": len(ordered)}

    def _version_items(self, dataset: _Dataset, version: str | None) -> dict[str, dict[str, Any]] | None:
        if version is None:
            return dataset.items
        for candidate in dataset.versions:
            if version in (candidate.version_hash, candidate.version_name, candidate.id):
                return candidate.items
        return None

    def _stream_items(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(
            body,
            {"dataset_name", "last_retrieved_id", "steam_limit", "dataset_version", "project_name", "filters"},
            {"dataset_name"},
        )
        if body.get("filters"):
            raise BadRequest("item filters are not modelled by the fake")
        if body.get("last_retrieved_id") is not None and not is_uuid(body["last_retrieved_id"]):
            raise BadRequest(f"last_retrieved_id {body['last_retrieved_id']!r} is not a UUID")
        limit = body.get("steam_limit") or 500
        if not isinstance(limit, int) or not 1 <= limit <= 2000:
            raise BadRequest(f"steam_limit must be between 1 and 2000, got {limit!r}")
        with self._lock:
            dataset = self._find_dataset(body["dataset_name"], body.get("project_name"))
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            items = self._version_items(dataset, body.get("dataset_version"))
            if items is None:
                return 404, {"errors": ["Dataset version not found"]}
            ordered = sorted(items, reverse=True)
            if body.get("last_retrieved_id"):
                ordered = [i for i in ordered if i < body["last_retrieved_id"]]
            lines = [json.dumps(items[i]) + "\n" for i in ordered[:limit]]
        return 200, _NDJSON("".join(lines).encode())

    def _delete_items(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(body, {"item_ids", "dataset_id", "filters", "batch_group_id"}, set())
        ids = body.get("item_ids")
        if ids is not None and (body.get("dataset_id") is not None or body.get("filters") is not None):
            raise BadRequest("item_ids is mutually exclusive with dataset_id and filters")
        if ids is None:
            raise BadRequest("deleting by filters is not modelled by the fake; send item_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 1000:
            raise BadRequest("item_ids must hold between 1 and 1000 ids")
        bad = [i for i in ids if not is_uuid(i)]
        if bad:
            raise BadRequest(f"item_ids holds values that are not UUIDs: {bad[:3]}")
        if body.get("batch_group_id") is not None and not is_uuid7(body["batch_group_id"]):
            raise BadRequest(f"batch_group_id {body['batch_group_id']!r} must be a version 7 UUID")
        wanted = set(ids)
        with self._lock:
            # Like the backend: deletion by id is not scoped to a dataset.
            for dataset in self._datasets.values():
                if not wanted & set(dataset.items):
                    continue

                def remove(stored: dict[str, dict[str, Any]]) -> tuple[int, int, int]:
                    hit = wanted & set(stored)
                    for item_id in hit:
                        del stored[item_id]
                    return 0, 0, len(hit)

                self._mutate(dataset, body.get("batch_group_id"), remove)
        return 204, None

    def _list_versions(self, query: dict[str, str], body: Any, dataset_id: str) -> tuple[int, Any]:
        unknown = set(query) - {"page", "size"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s) {sorted(unknown)}")
        page = self._int_param(query, "page", 1)
        size = self._int_param(query, "size", 10)
        with self._lock:
            dataset = self._datasets.get(dataset_id)
            if dataset is None:
                return 404, {"errors": ["Dataset not found"]}
            versions = [self._version_public(dataset, v, i == 0) for i, v in enumerate(dataset.versions)]
        start = (page - 1) * size
        return 200, {"content": versions[start : start + size], "page": page, "size": size, "total": len(versions)}

    def _retrieve_project(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(body, {"name"}, {"name"})
        with self._lock:
            try:
                return 200, dict(self._project_by_name(body["name"], create=False))
            except KeyError:
                return 404, {"errors": ["Project not found"]}

    def _get_project(self, query: dict[str, str], body: Any, project_id: str) -> tuple[int, Any]:
        with self._lock:
            project = self._projects.get(project_id)
        return (200, dict(project)) if project else (404, {"errors": ["Project not found"]})

    def _search_traces(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(
            body,
            {
                "project_name",
                "project_id",
                "filters",
                "last_retrieved_id",
                "limit",
                "truncate",
                "strip_attachments",
                "exclude",
                "from_time",
                "to_time",
            },
            set(),
        )
        if not body.get("project_name") and not body.get("project_id"):
            raise BadRequest("project_name or project_id must be provided")
        limit = body.get("limit") or 500
        if not isinstance(limit, int) or not 1 <= limit <= 2000:
            raise BadRequest(f"limit must be between 1 and 2000, got {limit!r}")
        exclude = body.get("exclude") or []
        unknown = set(exclude) - TRACE_EXCLUDABLE
        if unknown:
            raise BadRequest(f"exclude holds unknown field(s) {sorted(unknown)}")
        if body.get("from_time") or body.get("to_time"):
            raise BadRequest("from_time/to_time are not modelled by the fake")
        predicates = [self._trace_predicate(f) for f in body.get("filters") or []]
        with self._lock:
            if body.get("project_id"):
                project = self._projects.get(body["project_id"])
            else:
                project = next((p for p in self._projects.values() if p["name"] == body["project_name"]), None)
            if project is None:
                return 404, {"errors": ["Project not found"]}
            traces = [t for t in self._traces if t["project_id"] == project["id"] and all(p(t) for p in predicates)]
            traces.sort(key=lambda t: t["id"], reverse=True)
            if body.get("last_retrieved_id"):
                traces = [t for t in traces if t["id"] < body["last_retrieved_id"]]
            lines = [
                json.dumps({k: v for k, v in t.items() if k not in exclude}) + "\n" for t in traces[:limit]
            ]
        return 200, _NDJSON("".join(lines).encode())

    # -------------------------------------------------------------- experiments, traces, spans, scores
    def _batch(self, body: Any, key: str) -> list[dict[str, Any]]:
        """The list under ``key`` of a batch body: 1 to 1000 objects, as the backend's @Size demands."""
        body = self._object(body, {key}, {key})
        rows = body[key]
        if not isinstance(rows, list) or not 1 <= len(rows) <= 1000:
            raise BadRequest(f"{key} must hold between 1 and 1000 entries")
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(f"{key}[{index}] must be an object")
        return rows

    @staticmethod
    def _fields(row: dict[str, Any], allowed: frozenset[str], where: str) -> None:
        unknown = set(row) - allowed
        if unknown:
            raise BadRequest(f"{where}: unrecognized field(s) {sorted(unknown)}")

    @staticmethod
    def _timestamp(value: Any, where: str, required: bool) -> None:
        if value is None:
            if required:
                raise BadRequest(f"{where} must not be null")
            return
        if not isinstance(value, str):
            raise BadRequest(f"{where} {value!r} is not an ISO-8601 timestamp")
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{where} {value!r} is not an ISO-8601 timestamp") from None

    def _project_id_for(self, row: dict[str, Any], where: str) -> str:
        """The project a trace, span or score goes to (created on first use, as the backend does)."""
        if row.get("project_id"):
            if row["project_id"] not in self._projects:
                raise BadRequest(f"{where}: project_id {row['project_id']!r} is unknown")
            return row["project_id"]
        return self._project_by_name(row.get("project_name") or "Default Project", create=True)["id"]

    def _create_traces(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        rows = self._batch(body, "traces")
        _unique_uuid7_ids(rows, "trace")
        for index, row in enumerate(rows):
            where = f"traces[{index}]"
            self._fields(row, TRACE_WRITE_FIELDS, where)
            self._timestamp(row.get("start_time"), f"{where}.start_time", required=True)
            self._timestamp(row.get("end_time"), f"{where}.end_time", required=False)
            if row.get("source") is not None and row["source"] not in TRACE_SOURCES:
                raise BadRequest(f"{where}.source {row['source']!r} must be one of {list(TRACE_SOURCES)}")
            if row.get("metadata") is not None and not isinstance(row["metadata"], dict):
                raise BadRequest(f"{where}.metadata must be a JSON object")
        with self._lock:
            stamp = now_iso()
            for row in rows:
                trace = {k: copy.deepcopy(v) for k, v in row.items() if v is not None and k != "project_name"}
                trace.update(
                    project_id=self._project_id_for(row, "trace"),
                    created_at=stamp,
                    last_updated_at=row.get("last_updated_at") or stamp,
                )
                trace.setdefault("metadata", {})
                trace.setdefault("tags", [])
                self._store_trace(trace)
        return 204, None

    def _create_spans(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        rows = self._batch(body, "spans")
        _unique_uuid7_ids(rows, "span")
        for index, row in enumerate(rows):
            where = f"spans[{index}]"
            self._fields(row, SPAN_WRITE_FIELDS, where)
            if not is_uuid7(row.get("trace_id")):
                raise BadRequest(f"{where}.trace_id {row.get('trace_id')!r} must be a version 7 UUID")
            if row.get("parent_span_id") is not None and not is_uuid7(row["parent_span_id"]):
                raise BadRequest(f"{where}.parent_span_id {row['parent_span_id']!r} must be a version 7 UUID")
            if row.get("type") is not None and row["type"] not in SPAN_TYPES:
                raise BadRequest(f"{where}.type {row['type']!r} must be one of {list(SPAN_TYPES)}")
            if row.get("source") is not None and row["source"] not in TRACE_SOURCES:
                raise BadRequest(f"{where}.source {row['source']!r} must be one of {list(TRACE_SOURCES)}")
            self._timestamp(row.get("start_time"), f"{where}.start_time", required=True)
            self._timestamp(row.get("end_time"), f"{where}.end_time", required=False)
        with self._lock:
            for row in rows:
                span = {k: copy.deepcopy(v) for k, v in row.items() if v is not None and k != "project_name"}
                span["project_id"] = self._project_id_for(row, "span")
                self._spans[row["id"]] = span
        return 204, None

    def _score_traces(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        rows = self._batch(body, "scores")
        for index, row in enumerate(rows):
            where = f"scores[{index}]"
            self._fields(row, FEEDBACK_WRITE_FIELDS, where)
            if not is_uuid(row.get("id")):
                raise BadRequest(f"{where}.id {row.get('id')!r} (the trace id) is not a UUID")
            if not isinstance(row.get("name"), str) or not row["name"].strip():
                raise BadRequest(f"{where}.name must not be blank")
            value = row.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise BadRequest(f"{where}.value {value!r} must be a number")
            if abs(value) > 999_999_999.999999999:
                raise BadRequest(f"{where}.value {value!r} is out of range")
            if row.get("source") not in FEEDBACK_SOURCES:
                raise BadRequest(f"{where}.source {row.get('source')!r} must be one of {list(FEEDBACK_SOURCES)}")
        with self._lock:
            stamp = now_iso()
            for row in rows:
                self._project_id_for(row, "feedback score")
                score = {
                    "name": row["name"],
                    "value": float(row["value"]),
                    "source": row["source"],
                    "created_at": stamp,
                    "last_updated_at": stamp,
                }
                for optional in ("reason", "category_name"):
                    if row.get(optional) is not None:
                        score[optional] = row[optional]
                trace = self._trace_index.get(row["id"])
                if trace is None:
                    pending = self._pending_scores.setdefault(row["id"], [])
                    pending[:] = [s for s in pending if s["name"] != score["name"]] + [score]
                else:
                    trace["feedback_scores"] = [s for s in trace["feedback_scores"] if s["name"] != score["name"]] + [
                        score
                    ]
        return 204, None

    def _create_experiment(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(body, set(EXPERIMENT_WRITE_FIELDS), {"dataset_name"})
        if body.get("id") is not None and not is_uuid7(body["id"]):
            raise BadRequest(f"experiment id {body['id']!r} must be a version 7 UUID")
        if body.get("type") is not None and body["type"] not in EXPERIMENT_TYPES:
            raise BadRequest(f"experiment type {body['type']!r} must be one of {list(EXPERIMENT_TYPES)}")
        if body.get("evaluation_method") is not None and body["evaluation_method"] not in EXPERIMENT_METHODS:
            raise BadRequest(f"evaluation_method {body['evaluation_method']!r} must be one of {list(EXPERIMENT_METHODS)}")
        if body.get("status") is not None and body["status"] not in EXPERIMENT_STATUSES:
            raise BadRequest(f"experiment status {body['status']!r} must be one of {list(EXPERIMENT_STATUSES)}")
        if body.get("metadata") is not None and not isinstance(body["metadata"], (dict, list)):
            raise BadRequest("experiment metadata must be a JSON object or array")
        if body.get("optimization_id") or body.get("experiment_scores") or body.get("prompt_version"):
            raise BadRequest("optimization_id, experiment_scores and prompt_version are not modelled by the fake")
        if body.get("prompt_versions"):
            raise BadRequest("prompt_versions are not modelled by the fake")
        with self._lock:
            dataset = self._find_dataset(body["dataset_name"], body.get("project_name"))
            if dataset is None:
                # The backend would create the dataset; an experiment on a dataset that does not
                # exist means the pipeline evaluated something it never wrote.
                raise BadRequest(f"experiment on dataset {body['dataset_name']!r}, which the fake does not hold")
            version_id = body.get("dataset_version_id")
            if version_id is not None and version_id not in {v.id for v in dataset.versions}:
                raise BadRequest(f"dataset_version_id {version_id!r} is not a version of {dataset.name!r}")
            experiment_id = body.get("id") or uuid7()
            if experiment_id in self._experiments:
                return 409, {"errors": ["Experiment already exists"]}
            self._experiments[experiment_id] = {
                "id": experiment_id,
                "name": body.get("name") or f"experiment-{experiment_id[-6:]}",
                "dataset_id": dataset.id,
                "dataset_name": dataset.name,
                "project_id": self._project_id_for(body, "experiment") if body.get("project_name") or body.get(
                    "project_id") else dataset.project_id,
                "metadata": copy.deepcopy(body.get("metadata")),
                "tags": list(body.get("tags") or []),
                "type": body.get("type") or "regular",
                "evaluation_method": body.get("evaluation_method") or "dataset",
                "status": body.get("status") or "running",
                "dataset_version_id": version_id or (dataset.versions[0].id if dataset.versions else None),
                "created_at": now_iso(),
            }
        return 201, None

    def _create_experiment_items(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        rows = self._batch(body, "experiment_items")
        with self._lock:
            for index, row in enumerate(rows):
                where = f"experiment_items[{index}]"
                self._fields(row, EXPERIMENT_ITEM_WRITE_FIELDS, where)
                if not is_uuid7(row.get("id")):
                    raise BadRequest(f"{where}.id {row.get('id')!r} must be a version 7 UUID")
                experiment = self._experiments.get(row.get("experiment_id") or "")
                if experiment is None:
                    raise BadRequest(f"{where}.experiment_id {row.get('experiment_id')!r} is not an experiment")
                dataset = self._datasets[experiment["dataset_id"]]
                if not any(row.get("dataset_item_id") in v.items for v in dataset.versions):
                    raise BadRequest(
                        f"{where}.dataset_item_id {row.get('dataset_item_id')!r} is not an item of {dataset.name!r}"
                    )
                if not is_uuid7(row.get("trace_id")):
                    raise BadRequest(f"{where}.trace_id {row.get('trace_id')!r} must be a version 7 UUID")
                policy = row.get("execution_policy")
                if policy is not None and (not isinstance(policy, dict) or set(policy) - {"runs_per_item", "pass_threshold"}):
                    raise BadRequest(f"{where}.execution_policy {policy!r} is not an execution policy")
            for row in rows:
                self._experiment_items[row["id"]] = {
                    "id": row["id"],
                    "experiment_id": row["experiment_id"],
                    "dataset_item_id": row["dataset_item_id"],
                    "trace_id": row["trace_id"],
                    "created_at": now_iso(),
                }
        return 204, None

    def _finish_experiments(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        body = self._object(body, {"ids"}, {"ids"})
        ids = body["ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= 1000 or not all(is_uuid(i) for i in ids):
            raise BadRequest("ids must hold between 1 and 1000 experiment ids")
        with self._lock:
            unknown = [i for i in ids if i not in self._experiments]
            if unknown:
                raise BadRequest(f"finishing unknown experiment(s) {unknown}")
            for experiment_id in ids:
                self._experiments[experiment_id]["status"] = "completed"
        return 204, None

    @staticmethod
    def _trace_predicate(spec: Any) -> Callable[[dict[str, Any]], bool]:
        """The filter semantics the fake models; anything else is a 400 so nobody relies on it."""
        if not isinstance(spec, dict) or not spec.get("field") or not spec.get("operator"):
            raise BadRequest(f"filter {spec!r} needs field and operator")
        field_, operator, key, value = spec["field"], spec["operator"], spec.get("key") or "", spec.get("value")
        if field_ == "metadata" and operator in ("=", "!="):
            if not key:
                raise BadRequest("a metadata filter needs a key")

            def matches(trace: dict[str, Any]) -> bool:
                metadata = trace.get("metadata") if isinstance(trace.get("metadata"), dict) else {}
                if key not in metadata:
                    return operator == "!="
                stored = metadata[key]
                text = stored if isinstance(stored, str) else json.dumps(stored)
                return (text == value) == (operator == "=")

            return matches
        if field_ == "feedback_scores" and key:

            def scores(trace: dict[str, Any]) -> list[float]:
                return [s["value"] for s in trace.get("feedback_scores") or [] if s["name"] == key]

            if operator in ("is_empty", "is_not_empty") and value not in ("", None):
                raise BadRequest(f"{operator} takes no value, got {value!r}")
            if spec.get("type") not in (None, "feedback_scores_number"):
                raise BadRequest(f"a feedback score filter has type feedback_scores_number, not {spec.get('type')!r}")
            if operator == "is_not_empty":
                return lambda trace: bool(scores(trace))
            if operator == "is_empty":
                return lambda trace: not scores(trace)
            comparisons: dict[str, Callable[[float, float], bool]] = {
                "=": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                ">": lambda a, b: a > b,
                ">=": lambda a, b: a >= b,
                "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b,
            }
            if operator in comparisons:
                try:
                    threshold = float(value)
                except (TypeError, ValueError):
                    raise BadRequest(f"feedback score filter value {value!r} is not a number") from None
                compare = comparisons[operator]
                return lambda trace: any(compare(s, threshold) for s in scores(trace))
        if field_ == "id" and operator == "=":
            return lambda trace: trace["id"] == value
        raise BadRequest(f"trace filter {field_}{'.' + key if key else ''} {operator} is not modelled by the fake")


class _NDJSON(bytes):
    """A body sent as ``application/octet-stream`` lines, as the backend streams."""


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpik
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr access logs
        return

    def _read_body(self) -> tuple[bytes, bool]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
        if gzipped:
            raw = gzip.decompress(raw)
        elif raw[:2] == b"\x1f\x8b":
            self.owner._violation(f"{self.command} {self.path}: gzip body without Content-Encoding: gzip")
        return raw, gzipped

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, _NDJSON):
            data, content_type = bytes(payload), "application/octet-stream"
        elif payload is None:
            data, content_type = b"", "application/json"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self) -> None:
        owner = self.owner
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        raw, gzipped = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        routed = owner.route(self.command, parsed.path)
        record = RecordedRequest(
            operation=routed[0] if routed else "unknown",
            method=self.command,
            path=parsed.path,
            query=query,
            body=body,
            gzipped=gzipped,
        )
        with owner._lock:
            owner.requests.append(record)
        if routed is None:
            owner._violation(f"unknown endpoint {self.command} {parsed.path}")
            record.status = 404
            self._answer(404, {"errors": [f"HTTP 404 Not Found: {self.command} {parsed.path}"]})
            return
        operation, handler, params = routed
        if owner.api_key is not None and self.headers.get("Authorization") != owner.api_key:
            record.status = 401
            self._answer(401, {"errors": ["User not allowed to access workspace"]})
            return
        if owner.workspace is not None and self.headers.get("Comet-Workspace") != owner.workspace:
            record.status = 403
            self._answer(403, {"errors": ["Workspace not found or not allowed"]})
            return
        if isinstance(body, str):
            owner._violation(f"{self.command} {parsed.path}: body is not JSON")
            record.status = 400
            self._answer(400, {"errors": ["Unable to process JSON"]})
            return
        with owner._lock:
            owner._in_flight[operation] += 1
            owner.max_in_flight[operation] = max(owner.max_in_flight[operation], owner._in_flight[operation])
        try:
            self._serve(record, operation, handler, params, query, body)
        finally:
            with owner._lock:
                owner._in_flight[operation] -= 1

    def _serve(
        self,
        record: RecordedRequest,
        operation: str,
        handler: Callable[..., tuple[int, Any]],
        params: tuple[str, ...],
        query: dict[str, str],
        body: Any,
    ) -> None:
        owner = self.owner
        path = record.path
        fault = owner._next_fault(operation)
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "status":
                record.status = fault.status
                self._answer(fault.status, {"errors": [f"injected {fault.status}"]}, fault.headers)
                return
            if fault.kind == "drop":
                self._drop()
                return
            if fault.kind == "slow":
                time.sleep(fault.delay)
        try:
            status, payload = handler(query, body, *params)
        except BadRequest as exc:
            owner._violation(f"{self.command} {path}: {exc}")
            status, payload = 400, {"errors": [str(exc)]}
        record.status = status
        if fault is not None and fault.kind == "drop_after":
            self._drop()
            return
        self._answer(status, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# ---------------------------------------------------------------------- pytest fixtures
OPIK_TEST_API_KEY = "opik-test-key-" + "9f3c1d7e5a2b4c6d"
OPIK_TEST_WORKSPACE = "skill-pipeline-tests"
OFFLINE_ENV = {
    "OPIK_SENTRY_ENABLE": "false",
    "OPIK_ANALYTICS_ENABLE": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "OPIK_CHECK_TLS_CERTIFICATE": "false",
}


def loopback_only(monkeypatch: pytest.MonkeyPatch, attempts: list[str]) -> None:
    """Refuse (and record) any socket connection that is not to the loopback interface."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        if not isinstance(address, tuple):
            return True  # unix sockets
        host = str(address[0])
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

    def connect(sock: socket.socket, address: Any) -> Any:
        if not allowed(address):
            attempts.append(str(address))
            raise ConnectionRefusedError(f"test guard: no network except loopback (tried {address})")
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if not allowed(address):
            attempts.append(str(address))
            return 111
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def opik_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpik]:
    """A started fake Opik with ``OPIK_*`` pointing at it; fails the test on any protocol violation
    or on any attempt to reach a non-loopback address."""
    outside: list[str] = []
    loopback_only(monkeypatch, outside)
    fake = FakeOpik(api_key=OPIK_TEST_API_KEY, workspace=OPIK_TEST_WORKSPACE).start()
    for name, value in OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPIK_URL_OVERRIDE", fake.url)
    monkeypatch.setenv("OPIK_API_KEY", OPIK_TEST_API_KEY)
    monkeypatch.setenv("OPIK_WORKSPACE", OPIK_TEST_WORKSPACE)
    monkeypatch.setenv("OPIK_PROJECT_NAME", "skill-pipeline")
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.violations, "requests the real Opik would reject:\n" + "\n".join(fake.violations)
    assert not outside, f"attempts to leave the loopback interface: {outside}"


def fast_sdk_retries(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.01) -> None:
    """Make the SDK's own retry back-off (about 5 s, then 6 s, between its 3 attempts) near instant.

    ``opik_rest_retry`` computes its wait by calling ``tenacity.wait_exponential`` through the
    ``retry_decorator`` module at each retry, so replacing that module's ``tenacity`` name changes
    the wait and nothing else; attempts and what is retried stay the SDK's.
    """
    from types import SimpleNamespace

    from opik.rest_client_configurator import retry_decorator

    shim = SimpleNamespace(wait_exponential=lambda **_: (lambda _state: seconds))
    monkeypatch.setattr(retry_decorator, "tenacity", shim)


__all__ = [
    "FakeOpik",
    "Fault",
    "OPERATIONS",
    "OPIK_TEST_API_KEY",
    "OPIK_TEST_WORKSPACE",
    "RecordedRequest",
    "fast_sdk_retries",
    "is_uuid7",
    "loopback_only",
    "opik_fake",
    "uuid7",
]
