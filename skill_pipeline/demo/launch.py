"""The demo's runs go through the code location, as the UI's and the daemon's do.

The workspace (``workspace.yaml``, the same code location ``make dev`` loads, served by its own
code server) creates every run: each carries its job's remote origin, so it is listed under
Jobs → <job> → Runs and on the Overview timeline, and can be re-executed from the UI. The skill
sensor's tick is the sensor daemon's own tick code: it stores the sensor's cursor and tick in the
instance and tags the runs with their run keys, so the first ``make dev`` after ``make demo``
starts no duplicate run.

What differs from ``make dev`` is only where a submitted run executes: the demo's instance takes
the stored ``dagster.yaml`` (same storage) with two overrides, the default run coordinator and
Dagster's in-memory run launcher, so each run executes in this process as soon as it is
submitted (``make dev`` starts a process per run: ~10 s each on this machine, minutes for the
demo's ~40 runs). Private Dagster APIs used here are those of the pinned release (1.13.27):
``WorkspaceProcessContext``, ``WorkspaceFileTarget``, the sensor daemon's ``_process_tick_generator``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType

LOCATION_NAME = "skill_pipeline"  # workspace.yaml's location_name
WORKSPACE_FILE = Path(__file__).resolve().parents[2] / "workspace.yaml"
IN_PROCESS_LAUNCH: dict[str, Any] = {
    "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    "run_launcher": {
        "module": "dagster._core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    },
}
ASSET_JOB = "__ASSET_JOB"
_log = logging.getLogger(__name__)


def demo_instance() -> dg.DagsterInstance:
    """``$DAGSTER_HOME``'s instance (its storage, what ``make dev`` reads) launching runs in this process."""
    from dagster._core.instance.ref import InstanceRef

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit("DAGSTER_HOME is not set: run `make demo`, which sets it to ./.dagster_home")
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(home, overrides=IN_PROCESS_LAUNCH))


def materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, Any]]:
    """Asset name -> metadata values of the run's materialisations (the last one of each asset)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        found[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    return found


class CodeLocationRuns:
    """Runs created from the workspace's code location and submitted to the instance."""

    def __init__(self, process_context: Any) -> None:
        self.process_context = process_context
        self.instance: dg.DagsterInstance = process_context.instance
        self.workspace = process_context.create_request_context()
        self.location = self.workspace.get_code_location(LOCATION_NAME)
        self.repository = next(iter(self.location.get_repositories().values()))

    def launch(
        self,
        job_name: str,
        *,
        partition_key: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        asset_selection: list[str] | None = None,
    ) -> dg.DagsterRun:
        """Create the run as ``dagster job launch`` does and submit it; returns it finished."""
        from dagster._core.definitions.selector import JobSubsetSelector

        keys = [dg.AssetKey(name) for name in asset_selection] if asset_selection else None
        selector = JobSubsetSelector(
            location_name=self.location.name, repository_name=self.repository.name, job_name=job_name,
            op_selection=None, asset_selection=keys,
        )
        remote_job = self.location.get_job(selector)
        run_config = dict(run_config or {})
        plan = self.location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        ).execution_plan_snapshot
        all_tags = {**remote_job.tags, **(tags or {})}
        if partition_key is not None:
            all_tags["dagster/partition"] = partition_key
        run = self.instance.create_run(
            job_name=job_name, run_id=None, run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection, step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None, status=None, root_run_id=None, parent_run_id=None, tags=all_tags,
            job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot, remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(), asset_selection=frozenset(keys) if keys else None,
            asset_check_selection=None, asset_graph=self.repository.asset_graph,
        )
        self.instance.submit_run(run.run_id, self.workspace)
        return self.instance.get_run_by_id(run.run_id)

    def remote_sensor(self, name: str) -> Any:
        return self.repository.get_sensor(name)

    def sensor_cursor(self, name: str) -> str | None:
        sensor = self.remote_sensor(name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        data = state.instigator_data if state else None
        return getattr(data, "cursor", None)

    def tick_sensor(self, name: str) -> list[dg.DagsterRun] | None:
        """One tick of the sensor by the sensor daemon's code (cursor, tick, run keys, runs submitted).

        None when the sensor ticked less than its minimum interval ago (the daemon would skip it too)."""
        from dagster._core.scheduler.instigation import (
            InstigatorState,
            InstigatorStatus,
            InstigatorType,
            SensorInstigatorData,
        )
        from dagster._daemon.sensor import _process_tick_generator, is_under_min_interval
        from dagster._time import get_current_timestamp

        sensor = self.remote_sensor(name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        if state is None:
            state = InstigatorState(
                sensor.get_remote_origin(), InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE,
                SensorInstigatorData(min_interval=sensor.min_interval_seconds,
                                     last_sensor_start_timestamp=get_current_timestamp(), sensor_type=sensor.sensor_type),
            )
            self.instance.add_instigator_state(state)
        elif is_under_min_interval(state, sensor):
            return None
        before = {r.run_id for r in self.instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": name}))}
        outcome = list(_process_tick_generator(
            self.process_context, _log, sensor, state, None,
            self.instance.get_tick_retention_settings(InstigatorType.SENSOR), None,
        ))
        errors = [o for o in outcome if o is not None]
        if errors:
            raise RuntimeError(f"sensor {name}: tick failed: {errors[0].message}")
        runs = self.instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": name}))
        return [r for r in reversed(runs) if r.run_id not in before]


@contextmanager
def code_location_runs(instance: dg.DagsterInstance, workspace_file: Path = WORKSPACE_FILE) -> Iterator[CodeLocationRuns]:
    """The workspace's code location (its own code server, as under ``make dev``) for the demo's runs."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    with WorkspaceProcessContext(instance, target, code_server_log_level="WARNING") as context:
        yield CodeLocationRuns(context)
