"""Sensor-driven automation end to end on a running ``dagster dev`` (webserver + daemon).

Everything the other Dagster tests call by hand happens here the way it does in a deployment: the
daemon evaluates ``skill_sensor``, adds the partitions and launches the runs through the run queue;
a skill added to the app database is picked up by a later tick; a backfill of the ``promotion`` job
is launched through the GraphQL API and the backfill daemon submits its runs. The test only
observes, through GraphQL (the API the UI uses), and reads the dataset store at the end.

Timing: the sensor's ``minimum_interval_seconds`` is 60 and the daemon honours it from the
previous tick; nothing in Dagster 1.13 shortens it from the instance side (the ``sensors:`` section
of dagster.yaml only sets threads). The first tick comes a few seconds after start-up and the
first runs take longer than a minute on two cores, so the second tick (the new skill) costs little
extra waiting. The whole test takes about two to three minutes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from skill_pipeline.demo.stores import seed_local_home
from skill_pipeline.models import Skill, dataset_name
from skill_pipeline.sensors import SKILL_NAME_TAG
from skill_pipeline_tests.e2e_graphql import (
    ASSET_NODES,
    BACKFILL,
    LAUNCH_BACKFILL,
    PARTITIONS_AND_MATERIALISATIONS,
    RUNS,
    TICKS,
    fields_without_description,
    overview_rows_and_shares,
)
from skill_pipeline_tests.postgres_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCATION = "skill_pipeline"
REPOSITORY = "__repository__"
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "skill_sensor"}
NEW_SKILL = Skill(
    id=str(uuid.uuid5(uuid.NAMESPACE_URL, "skill-pipeline/e2e/observability")),
    name="Observability with OpenTelemetry",
    description="Traces, metrics and logs: instrumenting services, sampling, context propagation, collectors.",
    created_at=datetime(2026, 11, 1, tzinfo=timezone.utc),
)
FAILED_RUN = {"FAILURE", "CANCELED", "CANCELING"}

# A test instance: SQLite storage under a temporary DAGSTER_HOME, telemetry off, and a code
# server allowed a slow start on a loaded CI machine.
INSTANCE_YAML = """\
telemetry:
  enabled: false
code_servers:
  local_startup_timeout: 180
"""

T = TypeVar("T")


class GraphQLError(AssertionError):
    pass


class DagsterDev:
    """A running ``dagster dev`` and a small GraphQL client for it."""

    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port = port
        self.process = process
        self.log = log
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.client = httpx.Client(timeout=30)

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.client.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, dev: DagsterDev, interval: float = 1.0) -> T:
    """Poll ``probe`` until it returns something; fail naming what was awaited, with the server log."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise AssertionError(f"dagster dev exited ({dev.process.returncode}) while waiting for {what}:\n{dev.log_tail()}")
        try:
            found = probe()
            if found is not None:
                return found
        except (httpx.HTTPError, GraphQLError) as exc:  # webserver still starting, or a transient error
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error}):\n{dev.log_tail()}")


# ---------------------------------------------------------------------------------------------
# Process handling: dagster dev, its webserver, daemon, code server and run workers all share the
# process group of the dagster dev process, which is started in a session of its own.
# ---------------------------------------------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_group(process: subprocess.Popen, port: int, grace: float = 30) -> None:
    """Ctrl-C the whole group (what dagster dev expects), then SIGKILL whatever is left."""
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    if process.poll() is None:
        try:
            os.killpg(pgid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + grace
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while (group_members(pgid) or port_open(port)) and time.monotonic() < deadline:
        time.sleep(0.5)


@contextmanager
def dagster_dev(dagster_home: Path, skill_pipeline_home: Path, log: Path) -> Iterator[DagsterDev]:
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SKILL_PIPELINE_HOME": str(skill_pipeline_home),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(port, process, log)
    try:
        wait_for("the webserver to answer GraphQL", lambda: dev.query("{ version }")["version"] or None, 120, dev)
        yield dev
    finally:
        dev.client.close()
        stop_group(process, port)


def ticks(dev: DagsterDev) -> list[dict[str, Any]]:
    result = dev.query(TICKS, selector=SENSOR)["sensorOrError"]
    assert result["__typename"] == "Sensor", result
    return result["sensorState"]["ticks"]


def added_partitions(tick: dict[str, Any]) -> set[str]:
    return {
        key
        for request in tick["dynamicPartitionsRequestResults"]
        if request["partitionsDefName"] == "skills" and request["type"] == "ADD_PARTITIONS"
        for key in request["partitionKeys"] or []
    }


def tick_with_runs(dev: DagsterDev, expected_partition: str) -> dict[str, Any] | None:
    """The successful tick that added ``expected_partition`` and requested runs, once there is one."""
    for tick in ticks(dev):
        if tick["status"] == "FAILURE":
            raise AssertionError(f"skill_sensor tick failed: {tick['error']}")
        if tick["status"] == "SUCCESS" and tick["runIds"] and expected_partition in added_partitions(tick):
            return tick
    return None


def runs(dev: DagsterDev, run_ids: list[str]) -> list[dict[str, Any]]:
    result = dev.query(RUNS, filter={"runIds": run_ids})["runsOrError"]
    assert result["__typename"] == "Runs", result
    return result["results"]


def tag(run: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def all_succeeded(dev: DagsterDev, run_ids: list[str]) -> list[dict[str, Any]] | None:
    found = runs(dev, run_ids)
    failed = [r for r in found if r["status"] in FAILED_RUN]
    if failed:
        raise AssertionError(f"runs failed: {[(r['runId'], r['jobName'], tag(r, 'dagster/partition'), r['status']) for r in failed]}")
    if len(found) == len(run_ids) and all(r["status"] == "SUCCESS" for r in found):
        return found
    return None


def materialised_partitions(dev: DagsterDev, asset: str, partitions: list[str]) -> dict[str, set[str]]:
    """Partition → ids of the runs that materialised it."""
    node = dev.query(PARTITIONS_AND_MATERIALISATIONS, key={"path": [asset]}, partitions=partitions)["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    by_partition: dict[str, set[str]] = {}
    for event in node["assetMaterializations"]:
        by_partition.setdefault(event["partition"], set()).add(event["runId"])
    return by_partition


def asset_partition_keys(dev: DagsterDev, asset: str) -> set[str]:
    node = dev.query(PARTITIONS_AND_MATERIALISATIONS, key={"path": [asset]}, partitions=[])["assetNodeOrError"]
    return set(node["partitionKeys"])


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------
def test_sensor_backfill_and_lineage_on_a_running_dagster_dev(tmp_path):
    skill_pipeline_home = Path(os.environ["SKILL_PIPELINE_HOME"])  # per-test folder (conftest)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)

    # Seed the embedded stores (they start empty) before the code server starts, as `make dev` does.
    skill_store, dataset_store = seed_local_home(skill_pipeline_home)
    demo_active = sorted(s.id for s in skill_store.list_skills(active_only=True))
    demo_inactive = sorted(set(s.id for s in skill_store.list_skills(active_only=False)) - set(demo_active))
    assert len(demo_active) >= 2 and demo_inactive
    timings: dict[str, float] = {}
    started = time.monotonic()

    with dagster_dev(dagster_home, skill_pipeline_home, tmp_path / "dagster_dev.log") as dev:
        timings["webserver up"] = time.monotonic() - started

        # 1. The daemon's first tick adds a partition per active demo skill and requests their runs.
        first = wait_for("the first skill_sensor tick with runs", lambda: tick_with_runs(dev, demo_active[0]), 90, dev)
        timings["first tick"] = time.monotonic() - started
        assert sorted(added_partitions(first)) == demo_active
        first_runs = runs(dev, first["runIds"])
        assert sorted(tag(r, "dagster/partition") for r in first_runs) == demo_active
        assert {r["jobName"] for r in first_runs} == {"skill_dataset_job"}
        assert {tag(r, "dagster/sensor_name") for r in first_runs} == {"skill_sensor"}
        names = {s.id: s.name for s in skill_store.list_skills(active_only=False)}
        assert {tag(r, "dagster/partition"): tag(r, SKILL_NAME_TAG) for r in first_runs} == {k: names[k] for k in demo_active}
        assert sorted(asset_partition_keys(dev, "skill_dataset")) == demo_active

        wait_for("the first tick's runs to succeed", lambda: all_succeeded(dev, first["runIds"]), 300, dev, interval=2)
        timings["first runs succeeded"] = time.monotonic() - started
        for skill_id in demo_active:
            assert len(dataset_store.read_items(dataset_name(skill_id))) == 50, skill_id
        for skill_id in demo_inactive:
            assert dataset_store.read_items(dataset_name(skill_id)) == [], f"deactivated skill {skill_id} got a dataset"

        # 2. A skill added to the app database is noticed by a later tick (60 s minimum interval).
        skill_store.upsert_skill(NEW_SKILL)
        second = wait_for("the tick that adds the new skill", lambda: tick_with_runs(dev, NEW_SKILL.id), 150, dev, interval=2)
        timings["new skill tick"] = time.monotonic() - started
        assert added_partitions(second) == {NEW_SKILL.id}
        (new_run,) = runs(dev, second["runIds"])
        assert tag(new_run, "dagster/partition") == NEW_SKILL.id and new_run["jobName"] == "skill_dataset_job"
        assert tag(new_run, SKILL_NAME_TAG) == NEW_SKILL.name
        wait_for("the new skill's run to succeed", lambda: all_succeeded(dev, second["runIds"]), 180, dev, interval=2)
        timings["new skill run succeeded"] = time.monotonic() - started

        items = dataset_store.read_items(dataset_name(NEW_SKILL.id))
        assert len(items) == 50
        assert Counter(i.difficulty for i in items) == {d: 5 for d in range(1, 11)}
        assert {i.source for i in items} == {"synthetic"}  # a new skill has no answered challenges yet
        assert len({i.id for i in items}) == 50

        # 3. A backfill of the promotion job over every skill, launched as the UI does.
        everyone = sorted([*demo_active, NEW_SKILL.id])
        assert sorted(asset_partition_keys(dev, "skill_dataset")) == everyone
        launched = dev.query(
            LAUNCH_BACKFILL,
            params={
                "selector": {
                    "partitionSetName": "promotion_partition_set",
                    "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
                },
                "partitionNames": everyone,
                "title": "e2e promotion over every skill",
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def backfill_done() -> dict[str, Any] | None:
            backfill = dev.query(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            statuses = (backfill["partitionStatuses"] or {}).get("results", [])
            failed = [s for s in statuses if s["runStatus"] in FAILED_RUN]
            if backfill["status"] in {"FAILED", "CANCELED", "COMPLETED_FAILED"} or failed:
                raise AssertionError(f"backfill {backfill_id} failed: {backfill['status']} {backfill['error']} {failed}")
            done = len(statuses) == len(everyone) and all(s["runStatus"] == "SUCCESS" for s in statuses)
            return backfill if done and backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"} else None

        backfill = wait_for(f"backfill {backfill_id} to complete", backfill_done, 300, dev, interval=2)
        timings["backfill completed"] = time.monotonic() - started
        statuses = backfill["partitionStatuses"]["results"]
        assert backfill["numPartitions"] == len(everyone)
        assert sorted(s["partitionName"] for s in statuses) == everyone
        backfill_runs = runs(dev, [s["runId"] for s in statuses])
        assert {r["jobName"] for r in backfill_runs} == {"promotion"}
        assert {tag(r, "dagster/backfill") for r in backfill_runs} == {backfill_id}
        backfill_run_ids = {r["runId"] for r in backfill_runs}
        for asset in ("gold_standard_candidates", "skill_dataset"):
            by_partition = materialised_partitions(dev, asset, everyone)
            missing = [p for p in everyone if not by_partition.get(p, set()) & backfill_run_ids]
            assert not missing, f"{asset} was not materialised by the backfill for {missing}"
        # The promotion job does not regenerate scenarios: only the sensor's runs wrote them.
        scenario_runs = set().union(*materialised_partitions(dev, "synthetic_scenarios", everyone).values())
        assert not scenario_runs & backfill_run_ids
        for skill_id in everyone:
            assert len(dataset_store.read_items(dataset_name(skill_id))) == 50, skill_id

        # 4. Lineage, as the Assets page draws it.
        nodes = {tuple(n["assetKey"]["path"]): n for n in dev.query(ASSET_NODES)["assetNodes"]}
        dataset = nodes[("skill_dataset",)]
        upstream = {tuple(k["path"]) for k in dataset["dependencyKeys"]}
        downstream = {tuple(k["path"]) for k in dataset["dependedByKeys"]}
        assert {("synthetic_scenarios",), ("gold_standard_candidates",)} <= upstream
        if ("prompt_experiment",) in nodes:
            assert ("prompt_experiment",) in downstream
        assert not {tuple(k["path"]) for k in nodes[("synthetic_scenarios",)]["dependencyKeys"]}

        # 5. The all-skills overview (refreshed by its automation sensor): a row and a share key per skill.
        names[NEW_SKILL.id] = NEW_SKILL.name
        rows, shares = wait_for("skills_overview with a row per active skill",
                                lambda: overview_rows_and_shares(dev.query, len(everyone)), 240, dev, interval=3)
        assert sorted(row["skill_id"] for row in rows) == everyone
        assert set(shares) == {f"real_world_pct/{names[k]}" for k in everyone} | {"real_world_pct/overall"}

        # 6. The launchpad explains itself: every field of every job's config schema has a description.
        for job in ("skill_dataset_job", "promotion", "experiment", "prompt_comparison"):
            selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job}
            assert fields_without_description(dev.query, selector) == [], job

        pgid = dev.process.pid

    # Every process dagster dev started (webserver, daemon, code server, run workers) is gone.
    assert group_members(pgid) == [], f"processes left running: {group_members(pgid)}"
    assert not port_open(dev.port)
    timings["shut down"] = time.monotonic() - started
    print("e2e timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
