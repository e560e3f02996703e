"""The demo flow, importable so that the test suite runs exactly what ``make demo`` runs."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import BaseModel

from skill_pipeline.demo.stores import seed_demo_stores
from skill_pipeline.models import dataset_name
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore
from skill_pipeline.sensors import skill_sensor, skill_tags

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


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def seed_and_generate(
    defs: dg.Definitions, instance: dg.DagsterInstance, echo: Callable[[str], None] = lambda _: None
) -> tuple[dict[str, int], dict[str, int]]:
    """Steps 1–2 of the demo: seed the embedded stores, one sensor tick, and the runs it requests
    (each skill's scenarios generated and its first dataset written). Returns the items written
    and deleted per skill. Public so that tests run the demo's generation exactly as the demo does."""
    resources = defs.resources
    skill_store = resources["skill_store"]
    dataset_store = resources["dataset_store"]
    if isinstance(skill_store, SqliteSkillStore) and isinstance(dataset_store, LocalDatasetStore):
        seed_demo_stores(skill_store, dataset_store)  # the embedded stores start empty

    # 1. One sensor tick, as the daemon would evaluate it.
    context = dg.build_sensor_context(instance=instance, resources={"skill_store": skill_store}, definitions=defs)
    result = skill_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    echo(f"skill_sensor: {len(result.run_requests)} run requests")

    names = {s.id: s.name for s in skill_store.list_skills(active_only=False)}

    # 2. The runs the sensor requested.
    written: dict[str, int] = {}
    deleted: dict[str, int] = {}
    job = defs.resolve_job_def("skill_dataset_job")
    for request in result.run_requests:
        run = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, run_config=QUIET
        )
        meta = _metadata(run, "skill_dataset")
        written[request.partition_key] = meta.get("items_inserted", 0) + meta.get("items_updated", 0)
        deleted[request.partition_key] = meta.get("items_deleted", 0)
        echo(
            f"  {names.get(request.partition_key, request.partition_key)}: {meta.get('item_count')} items, "
            f"{written[request.partition_key]} written, {deleted[request.partition_key]} deleted"
        )
    return written, deleted


def run_demo(instance: dg.DagsterInstance, echo: Callable[[str], None] = lambda _: None) -> DemoReport:
    from skill_pipeline.definitions import build_definitions

    defs = build_definitions()
    resources = defs.resources
    skill_store = resources["skill_store"]
    dataset_store = resources["dataset_store"]
    written, deleted = seed_and_generate(defs, instance, echo)

    # 3. Promotion rounds until the eligible supply is used.
    skills = skill_store.list_skills(active_only=True)
    promotion = defs.resolve_job_def("promotion")
    rounds: list[dict[str, float]] = []
    for round_number in range(1, MAX_PROMOTION_ROUNDS + 1):
        promoted, shares = 0, {}
        for skill in skills:
            run = promotion.execute_in_process(instance=instance, partition_key=skill.id, run_config=QUIET,
                                               tags=skill_tags(skill.name))
            meta = _metadata(run, "skill_dataset")
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
    comparison = _compare_prompts(defs, instance, [s.id for s in skills], echo)
    overview = _materialize_overview(defs, instance, echo)
    return DemoReport(rows=rows, promotion_rounds=rounds, ok=ok, comparison=comparison, overview=overview)


# 6. The all-skills overview once at the end (under `make dev` its automation sensor refreshes it).
def _materialize_overview(defs: dg.Definitions, instance: dg.DagsterInstance, echo: Callable[[str], None]) -> str:
    from skill_pipeline.assets.overview import skills_overview

    result = dg.materialize([skills_overview], instance=instance, resources=defs.resources, run_config=QUIET,
                            raise_on_error=False)
    meta = _metadata(result, "skills_overview")
    if not meta:
        return "skills_overview: not materialised (see its run in the UI)"
    line = (f"skills_overview: {meta['skill_count']} skills, real-world share overall "
            f"{meta['real_world_pct/overall']}%, LLM cost to date {meta['llm_cost_usd_total']}")
    echo(line)
    return line


# 5. One prompt comparison (self-contained step): v0-terse against v1 on every skill's items, one
#    run per skill, then the pooled verdict with skill-clustered errors (no LLM call).
DEMO_BASELINE, DEMO_CANDIDATE = "v1", "v0-terse"


def _compare_prompts(defs: dg.Definitions, instance: dg.DagsterInstance, skill_ids: list[str],
                     echo: Callable[[str], None]) -> str:
    config = {"ops": {"prompt_experiment": {"config": {"baseline_version": DEMO_BASELINE,
                                                      "candidate_version": DEMO_CANDIDATE}}}}
    experiment = defs.resolve_job_def("experiment")
    names = {s.id: s.name for s in defs.resources["skill_store"].list_skills(active_only=False)}
    for skill_id in skill_ids:
        experiment.execute_in_process(instance=instance, partition_key=skill_id, run_config={**QUIET, **config},
                                      tags=skill_tags(names.get(skill_id, skill_id)),
                                      raise_on_error=False)
    pooled = defs.resolve_job_def("prompt_comparison").execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False)
    meta = _metadata(pooled, "prompt_comparison_all_skills")
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
