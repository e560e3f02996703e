"""The demo flow, importable so that the test suite runs exactly what ``make demo`` runs."""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from contextlib import contextmanager

import dagster as dg
from pydantic import BaseModel

from skill_pipeline.demo.launch import ASSET_JOB, CodeLocationRuns, code_location_runs, materializations
from skill_pipeline.demo.stores import seed_demo_stores
from skill_pipeline.models import dataset_name
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore
from skill_pipeline.sensors import skill_tags

MAX_PROMOTION_ROUNDS = 12
# The demo prints its own summary; the full event log stays in the instance for `make dev`.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class SkillRow(BaseModel):
    skill_id: str
    name: str
    items: int
    synthetic: int
    real_world: int
    written: int
    deleted: int

    @property
    def real_world_pct(self) -> float:
        return round(100 * self.real_world / self.items, 1) if self.items else 0.0


class DemoReport(BaseModel):
    rows: list[SkillRow]
    promotion_rounds: list[dict[str, float]]
    ok: bool
    comparison: str = ""
    overview: str = ""

    def table(self) -> str:
        lines = [f"{'skill':<32} {'items':>5} {'synthetic':>9} {'real-world':>10} {'real %':>6} {'written':>7} {'deleted':>7}"]
        for r in self.rows:
            lines.append(
                f"{r.name[:32]:<32} {r.items:>5} {r.synthetic:>9} {r.real_world:>10} {r.real_world_pct:>6} "
                f"{r.written:>7} {r.deleted:>7}"
            )
        if self.promotion_rounds:
            lines.append("")
            lines.append("real-world % after each promotion round: " + " → ".join(
                f"{sum(r.values()) / max(1, len(r)):.1f}" for r in self.promotion_rounds
            ))
        if self.comparison:
            lines += ["", self.comparison]
        if self.overview:
            lines += ["", self.overview]
        return "\n".join(lines)


def run_demo(instance: dg.DagsterInstance, echo: Callable[[str], None] = lambda _: None) -> DemoReport:
    """The demo on ``instance``; its runs are created from the workspace's code location (``demo.launch``),
    so an instance whose launcher runs them elsewhere works too (``demo_instance`` runs them here)."""
    import skill_pipeline.definitions as definitions

    # The runs execute in this process from the code location's module (``definitions.defs``): load it
    # under this environment, not one it was imported under earlier (a test's, or another folder's).
    importlib.reload(definitions)
    resources = definitions.defs.resources
    skill_store = resources["skill_store"]
    dataset_store = resources["dataset_store"]
    if isinstance(skill_store, SqliteSkillStore) and isinstance(dataset_store, LocalDatasetStore):
        seed_demo_stores(skill_store, dataset_store)  # the embedded stores start empty
    names = {s.id: s.name for s in skill_store.list_skills(active_only=False)}

    with code_location_runs(instance) as runs, _quiet():
        # 1. One tick of the skill sensor by the daemon's own code: partitions, cursor, run keys, runs.
        sensor_runs = runs.tick_sensor("skill_sensor")
        if sensor_runs is None:
            echo("skill_sensor: ticked less than a minute ago; its next tick is the daemon's (make dev)")
        else:
            echo(f"skill_sensor: {len(sensor_runs)} runs requested")

        # 2. The sensor's runs (they ran as they were submitted).
        written: dict[str, int] = {}
        deleted: dict[str, int] = {}
        for run in sensor_runs or []:
            key = run.tags.get("dagster/partition", "")
            meta = materializations(instance, run.run_id).get("skill_dataset", {})
            written[key] = meta.get("items_inserted", 0) + meta.get("items_updated", 0)
            deleted[key] = meta.get("items_deleted", 0)
            echo(f"  {names.get(key, key)}: {run.status.value}, {meta.get('item_count')} items, "
                 f"{written[key]} written, {deleted[key]} deleted")

        # 3. Promotion rounds until the eligible supply is used.
        skills = skill_store.list_skills(active_only=True)
        rounds: list[dict[str, float]] = []
        for round_number in range(1, MAX_PROMOTION_ROUNDS + 1):
            promoted, shares = 0, {}
            for skill in skills:
                run = runs.launch("promotion", partition_key=skill.id, run_config=QUIET, tags=skill_tags(skill.name))
                meta = materializations(instance, run.run_id).get("skill_dataset", {})
                promoted += meta.get("newly_promoted", 0)
                written[skill.id] = written.get(skill.id, 0) + meta.get("items_inserted", 0) + meta.get("items_updated", 0)
                deleted[skill.id] = deleted.get(skill.id, 0) + meta.get("items_deleted", 0)
                shares[skill.id] = meta.get("real_world_pct", 0.0)
            echo(f"promotion round {round_number}: {promoted} challenges promoted")
            if promoted == 0:
                break
            rounds.append(shares)

        # 4. What the store now holds.
        rows: list[SkillRow] = []
        for skill in skills:
            items = dataset_store.read_items(dataset_name(skill.id))
            real = sum(1 for item in items if item.source == "real_world")
            rows.append(
                SkillRow(skill_id=skill.id, name=skill.name, items=len(items), synthetic=len(items) - real,
                         real_world=real, written=written.get(skill.id, 0), deleted=deleted.get(skill.id, 0))
            )
        ok = all(row.items == 50 for row in rows)
        comparison = _compare_prompts(runs, [s.id for s in skills], names, echo)
        overview = _materialize_overview(runs, echo)
    return DemoReport(rows=rows, promotion_rounds=rounds, ok=ok, comparison=comparison, overview=overview)


@contextmanager
def _quiet():
    """The sensor's runs log at Dagster's default level (the sensor sets no run config): kept in the
    event log, not printed; the demo prints its own summary."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


# 6. The all-skills overview once at the end (under `make dev` its automation sensor refreshes it).
def _materialize_overview(runs: CodeLocationRuns, echo: Callable[[str], None]) -> str:
    run = runs.launch(ASSET_JOB, asset_selection=["skills_overview"], run_config=QUIET)
    meta = materializations(runs.instance, run.run_id).get("skills_overview", {})
    if not meta:
        return "skills_overview: not materialised (see its run in the UI)"
    line = (f"skills_overview: {meta['skill_count']} skills, real-world share overall "
            f"{meta['real_world_pct/overall']}%, LLM cost to date {meta['llm_cost_usd_total']}")
    echo(line)
    return line


# 5. One prompt comparison (self-contained step): v0-terse against v1 on every skill's items, one
#    run per skill, then the pooled verdict with skill-clustered errors (no LLM call).
DEMO_BASELINE, DEMO_CANDIDATE = "v1", "v0-terse"


def _compare_prompts(runs: CodeLocationRuns, skill_ids: list[str], names: dict[str, str],
                     echo: Callable[[str], None]) -> str:
    config = {"ops": {"prompt_experiment": {"config": {"baseline_version": DEMO_BASELINE,
                                                      "candidate_version": DEMO_CANDIDATE}}}}
    for skill_id in skill_ids:
        runs.launch("experiment", partition_key=skill_id, run_config={**QUIET, **config},
                    tags=skill_tags(names.get(skill_id, skill_id)))
    pooled = runs.launch("prompt_comparison", run_config=QUIET)
    meta = materializations(runs.instance, pooled.run_id).get("prompt_comparison_all_skills", {})
    if not meta:
        return "prompt comparison: not run (no per-skill comparison succeeded)"
    line = f"prompt comparison: {meta['summary']} (gate {'passes' if meta['gate_passes'] else 'fails'})"
    echo(line)
    rows = [f"  {'metric':<28} {DEMO_BASELINE:>6} {DEMO_CANDIDATE:>8} {'diff':>7}  {'95% CI':<17} verdict"]
    for record in meta["comparison"].records:
        r = record.data
        rows.append(f"  {r['metric']:<28} {r['mean_baseline']:>6.3f} {r['mean_candidate']:>8.3f} {r['diff']:>+7.3f}  "
                    f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] {r['verdict']}")
    return "\n".join([line, *rows])
