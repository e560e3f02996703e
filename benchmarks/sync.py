"""Sync: how much a dataset sync writes, first time, when nothing changed, and when 5 items are promoted.

Each scenario is the work of ``skill_dataset``: read what the store holds, ``compose_dataset``,
``DatasetStore.sync`` (insert, read back, delete, read back, version). Writes are counted where
they happen, as items handed to ``write_items`` plus ids handed to ``delete_items`` (a subclass of
the store counts them and calls the real method).

Backends: the local SQLite store, and ``OpikDatasetStore`` through the real ``opik`` SDK against the
loopback Opik fake (``skill_pipeline_tests/fakes/opik_server.py``), where the HTTP requests the
fake served are counted too. If the Opik fake cannot be started, the local rows stand alone and
the reason is in the rows.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from benchmarks.common import Check, Row, offline_environment, print_result, timed

TITLE = "Sync"
DESCRIPTION = (
    "The work of `skill_dataset` for one dataset of 50 items: `read_items`, `compose_dataset`, "
    "`DatasetStore.sync` (insert, read back, delete, read back, version). *writes* = items handed to "
    "`write_items` + ids handed to `delete_items`, counted by a subclass of the store around the real methods. "
    "Local: the SQLite store. Opik: `OpikDatasetStore` through the real `opik` SDK against the loopback Opik fake, "
    "which also counts the HTTP requests it served (on loopback, so its seconds are round trips of ~0 ms)."
)

TARGET_RERUN_WRITES = 0
TARGET_PROMOTION_WRITES = 10
PROMOTED = 5
PROJECT = "skill-pipeline-bench"


def _skill():
    from skill_pipeline.models import Skill

    return Skill(
        id="bench-sync-skill",
        name="Incident response",
        description="Triage, escalation, runbooks, post-mortems and on-call hand-offs",
        created_at=datetime(2024, 6, 1, tzinfo=timezone.utc),
    )


def _pool(skill) -> list:
    from skill_pipeline_tests.builders import synthetic_pool

    return synthetic_pool(
        skill,
        scenario="During an outage of service {difficulty}-{slot}, the on-call engineer must decide whether to escalate",
        concepts=("triage", "escalation level {difficulty}"),
        created_at="2024-06-01T00:00:00+00:00",
    )


# Distinct questions: composition promotes only one of two near duplicates (token-set ratio ≥ 90), so
# questions that differ only in a number would promote one item, not the five measured here.
_QUESTIONS = (
    "Which step comes first when a disk-full alert pages the on-call engineer at night?",
    "A deploy doubled p99 latency; what evidence decides between rollback and a forward fix?",
    "How should an incident commander split work when three services fail at once?",
    "What belongs in a status update to customers during a partial outage?",
    "Which metric shows that a retry storm, not the database, caused the slowdown?",
    "When may a postmortem action item be closed without a code change?",
    "What is the safest way to rotate a leaked credential that production still uses?",
    "Why does paging on symptoms beat paging on causes for a web checkout flow?",
)


def _candidates(count: int) -> list:
    from skill_pipeline_tests.builders import candidate

    return [
        candidate(
            f"bench-challenge-{i}",
            1 + (2 * i) % 10,
            question=_QUESTIONS[i % len(_QUESTIONS)] + ("" if i < len(_QUESTIONS) else f" (variant {i})"),
            options=["Acknowledge and assess impact", "Restart every service", "Wait for a second alert", "Close the alert"],
            explanation="Acknowledging stops the escalation chain and assessing impact decides the severity.",
            answer_count=12,
            response_time_score=0.9,
            user_confidence=0.7,
            judge_composite_score=0.9 - i / 100,
        )
        for i in range(count)
    ]


class _Tally:
    def __init__(self) -> None:
        self.written = 0
        self.deleted = 0

    def snapshot(self) -> tuple[int, int]:
        return self.written, self.deleted


def _counting(base: type) -> type:
    """``base`` (a dataset store class), counting the items each sync writes and deletes."""

    class Counting(base):  # type: ignore[misc, valid-type]
        _tally: _Tally = PrivateAttr(default_factory=_Tally)

        def write_items(self, name: str, items: list) -> None:
            self._tally.written += len(items)
            super().write_items(name, items)

        def delete_items(self, name: str, ids: list[str]) -> None:
            self._tally.deleted += len(ids)
            super().delete_items(name, ids)

    Counting.__name__ = Counting.__qualname__ = f"Counting{base.__name__}"
    return Counting


def _counting_local():
    from skill_pipeline.resources.dataset_store_local import LocalDatasetStore

    return _counting(LocalDatasetStore)


def _counting_opik():
    from skill_pipeline.resources.dataset_store_opik import OpikDatasetStore

    return _counting(OpikDatasetStore)


def _scenarios(store: Any, backend: str, requests: Any = None) -> list[Row]:
    """The four syncs in order against ``store``; ``requests()`` gives the server's request log, if any."""
    from skill_pipeline.core.composition import compose_dataset
    from skill_pipeline.models import dataset_name

    skill = _skill()
    name = dataset_name(skill.id)
    pool = _pool(skill)
    promoted = _candidates(PROMOTED)
    plan = [
        ("first sync (50 items)", []),
        ("rerun, nothing changed", []),
        (f"promotes {PROMOTED} items", promoted),
        ("rerun after the promotion", promoted),
    ]
    rows: list[Row] = []
    for label, candidates in plan:
        before = store._tally.snapshot()
        seen = len(requests()) if requests else 0
        with timed() as elapsed:
            stored = store.read_items(name)
            composition = compose_dataset(skill, pool, candidates, stored, max_promotions=PROMOTED)
            report = store.sync(name, f"Benchmark dataset for {skill.name}", composition)
        written, deleted = (now - then for now, then in zip(store._tally.snapshot(), before))
        row: Row = {
            "backend": backend,
            "scenario": label,
            "items_written": written,
            "items_deleted": deleted,
            "writes": written + deleted,
            "seconds": round(elapsed.seconds, 3),
            "dataset_items": len(composition.target),
            "version": report.version,
        }
        if requests:
            served = requests()[seen:]
            by_operation = Counter(r.operation for r in served)
            row["http_requests"] = len(served)
            row["write_requests"] = by_operation.get("write_items", 0) + by_operation.get("delete_items", 0)
            row["requests_by_operation"] = ", ".join(f"{op} {n}" for op, n in sorted(by_operation.items()))
        rows.append(row)
    final = {item.id for item in store.read_items(name)}
    if final != {item.id for item in composition.target}:
        raise RuntimeError(f"sync benchmark ({backend}): the store does not hold the composed dataset")
    return rows


def _local() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        store = _counting_local()(path=str(Path(tmp) / "datasets.sqlite"))
        return _scenarios(store, "local (SQLite)")


def _opik() -> list[Row]:
    offline_environment()
    logging.getLogger("opik").setLevel(logging.WARNING)  # "Created a dataset at ..." on every create
    from skill_pipeline_tests.fakes.opik_server import OPIK_TEST_API_KEY, OPIK_TEST_WORKSPACE, FakeOpik

    fake = FakeOpik(api_key=OPIK_TEST_API_KEY, workspace=OPIK_TEST_WORKSPACE).start()
    store = _counting_opik()(url=fake.url, api_key=OPIK_TEST_API_KEY, workspace=OPIK_TEST_WORKSPACE, project_name=PROJECT)
    try:
        store.dataset_exists("warm-up")  # the SDK client is built once per process, not per sync
        rows = _scenarios(store, "Opik (SDK → loopback fake)", lambda: fake.requests)
    finally:
        store.close()
        fake.stop()
    if fake.violations:
        raise RuntimeError("sync benchmark: requests the real Opik would reject: " + "; ".join(fake.violations[:3]))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Same sizes quick or not: one dataset of 50 items is already small."""
    rows = _local()
    try:
        rows += _opik()
    except ImportError as exc:  # the fake is part of the test tree; without it the local rows stand alone
        rows.append({"backend": "Opik", "scenario": f"not measured: {exc}"})
    return rows


def checks(rows: list[Row]) -> list[Check]:
    out: list[Check] = []
    for backend in dict.fromkeys(r["backend"] for r in rows if "writes" in r):
        by = {r["scenario"]: r for r in rows if r["backend"] == backend}
        rerun = by["rerun, nothing changed"]
        promotion = by[f"promotes {PROMOTED} items"]
        again = by["rerun after the promotion"]
        extra = f", {rerun['http_requests']} HTTP requests, none a write" if "http_requests" in rerun else ""
        out.append(
            Check(
                benchmark="sync",
                target=f"{backend}: rerun with nothing changed writes {TARGET_RERUN_WRITES}",
                measured=f"{rerun['writes']} writes (and {again['writes']} on the rerun after the promotion){extra}",
                passed=rerun["writes"] == TARGET_RERUN_WRITES and again["writes"] == TARGET_RERUN_WRITES
                and rerun.get("write_requests", 0) == 0,
                note="the diff found content changes where there are none: the content hash is not stable "
                "across a read-back (key order, float rounding); hash a canonical form of what is read back.",
            )
        )
        out.append(
            Check(
                benchmark="sync",
                target=f"{backend}: promoting {PROMOTED} items writes ≤ {TARGET_PROMOTION_WRITES}",
                measured=f"{promotion['writes']} writes ({promotion['items_written']} inserted, "
                f"{promotion['items_deleted']} deleted)",
                passed=promotion["writes"] <= TARGET_PROMOTION_WRITES,
                note="items other than the promoted and the displaced were rewritten: their content changed "
                "with the promotion (e.g. a slot renumbering); keep displaced slots from shifting the others.",
            )
        )
    return out


def notes(rows: list[Row]) -> list[str]:
    opik = [r for r in rows if "http_requests" in r]
    if not opik:
        return ["Opik was not measured (see its row): local figures only."]
    by = {r["scenario"]: r for r in opik}
    rerun, promotion = by["rerun, nothing changed"], by[f"promotes {PROMOTED} items"]
    return [
        f"A sync that writes nothing still costs {rerun['http_requests']} HTTP requests against Opik "
        f"({rerun['requests_by_operation']}); the promotion sync costs {promotion['http_requests']}, of which "
        f"{promotion['write_requests']} are writes. Each dataset handle is a `retrieve_dataset` plus a `get_project` "
        "(the SDK resolves the project of every handle), and the store takes a fresh handle per step "
        "(read, ensure, write, verify, delete, verify, version).",
        f"Against Opik cloud at ~100 ms a round trip, the promotion sync would spend ~{promotion['http_requests'] * 0.1:.1f} s "
        "in round trips. Taking one handle per sync for the reads (fresh handles only for writes, where the SDK's "
        "content-hash cache makes them necessary) would cut them by about a third.",
    ]


if __name__ == "__main__":
    result_rows = run(quick="--quick" in sys.argv)
    print_result("sync", result_rows, checks(result_rows))
