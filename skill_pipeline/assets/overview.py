"""``skills_overview``: every skill at a glance, refreshed after dataset and promotion runs.

Reads the dataset store (what each dataset holds now) and the Dagster instance (the newest scoring,
check results and run of each partition, the cost of every generation): never IO-manager pickles.
The rows are computed in ``core.overview``.
"""

import dagster as dg
from dagster import DagsterEventType

from skill_pipeline.assets.dataset import skill_dataset
from skill_pipeline.assets.metadata import location, table
from skill_pipeline.core.budget import budget_status, spend_day, utcnow
from skill_pipeline.core.overview import NOT_AVAILABLE, SkillFacts, overview_frame, overview_row, share_keys, total_cost
from skill_pipeline.models import dataset_name
from skill_pipeline.partitions import skills_partitions
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.skill_store import SkillStore

OWNERS = ["team:learning-data"]
OVERVIEW_VERSION = "1"
# eager() without "no dependency missing": one skill whose first run failed must not freeze the
# overview of all the others. It still waits for runs in progress and for any skill_dataset update.
OVERVIEW_CONDITION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
MAX_GENERATIONS = 1000


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> tuple[dict, str | None]:
    """Metadata values and run id of the newest materialisation of ``asset`` for ``partition``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return {}, None
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}, records[0].run_id


def _calibration(meta: dict) -> dict[str, int] | None:
    value = meta.get("calibration")
    if value is None or not hasattr(value, "records"):
        return None
    return {str(r.data["status"]): int(r.data["challenges"]) for r in value.records}


def _checks(instance: dg.DagsterInstance, run_id: str | None) -> dict[str, bool] | None:
    if run_id is None:
        return None
    checks: dict[str, bool] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        checks[evaluation.check_name] = bool(evaluation.passed)
    return checks or None


def _costs(instance: dg.DagsterInstance, partition: str) -> tuple[list[float | None], bool]:
    """Each generation's cost (None when unpaid), and whether a paid one had no known price."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("synthetic_scenarios"), asset_partitions=[partition]),
        limit=MAX_GENERATIONS,
    ).records
    costs: list[float | None] = []
    unknown = False
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        value = meta["estimated_cost_usd"].value if "estimated_cost_usd" in meta else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            costs.append(float(value))
        else:
            costs.append(None)
            unknown = unknown or (value is None and "cost_note" in meta)
    return costs, unknown


def _last_run(instance: dg.DagsterInstance, partition: str) -> str | None:
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": partition}), limit=1)
    if not records:
        return None
    run = records[0].dagster_run
    return f"{run.status.value} ({run.job_name})"


def gather_facts(
    instance: dg.DagsterInstance, skill_id: str, name: str, dataset_store: DatasetStore, spend_today_usd: float | None = None
) -> SkillFacts:
    dataset = dataset_name(skill_id)
    items = dataset_store.read_items(dataset)
    candidates, _ = _latest_metadata(instance, "gold_standard_candidates", skill_id)
    _, dataset_run = _latest_metadata(instance, "skill_dataset", skill_id)
    costs, unknown = _costs(instance, skill_id)
    eligible = candidates.get("eligible")
    return SkillFacts(
        skill_id=skill_id,
        name=name,
        items=len(items),
        real_world=sum(1 for item in items if item.source == "real_world"),
        eligible=int(eligible) if isinstance(eligible, int) else None,
        calibration=_calibration(candidates),
        last_run=_last_run(instance, skill_id),
        checks=_checks(instance, dataset_run),
        costs=costs,
        unknown_cost=unknown,
        spend_today_usd=spend_today_usd,
        location=dataset_store.dataset_location(dataset),
    )


@dg.asset(
    group_name="overview",
    deps=[skill_dataset],
    automation_condition=OVERVIEW_CONDITION,
    code_version=OVERVIEW_VERSION,
    owners=OWNERS,
    kinds={"dagster", "pandas"},
    description=(
        "Every active skill at a glance, one row each: items, synthetic / real-world and the real-world "
        "share, eligible challenges not yet promoted, calibrated / uncalibrated challenges (newest "
        "scoring), the newest run and the checks of the newest dataset run, LLM cost to date (n/a when "
        "nothing was paid or a model has no list price) and today's spend; `spend/*` is today's spend "
        "against the deployment's budget. `real_world_pct/{skill name}` is one plot per skill. Refreshed by declarative automation after dataset and promotion runs."
    ),
)
def skills_overview(
    context: dg.AssetExecutionContext, skill_store: SkillStore, dataset_store: DatasetStore, llm: ScenarioLLM
) -> dg.MaterializeResult:
    known = set(context.instance.get_dynamic_partitions(skills_partitions.name))
    skills = [s for s in skill_store.list_skills(active_only=True) if s.id in known]
    day = spend_day(utcnow())
    ledger = llm.spend_ledger()
    by_skill = ledger.day_spend_by_skill(day)
    rows = [
        overview_row(gather_facts(context.instance, s.id, s.name, dataset_store,
                                  by_skill[s.id].usd if s.id in by_skill else None))
        for s in skills
    ]
    budget = budget_status(llm.spend_limits(), ledger.day_spend(day))
    frame = overview_frame(rows)
    cost = total_cost(rows)
    context.log.info(f"{len(rows)} skills; real-world share overall {share_keys(rows)['real_world_pct/overall']}%")
    links = {f"dataset/{r.skill}": location(r.dataset) for r in sorted(rows, key=lambda r: r.skill)}
    return dg.MaterializeResult(
        metadata={
            "skills": table(frame),
            "dagster/row_count": len(rows),
            "skill_count": len(rows),
            **{key: dg.MetadataValue.float(value) for key, value in share_keys(rows).items()},
            "llm_cost_usd_total": dg.MetadataValue.float(cost) if cost is not None else NOT_AVAILABLE,
            "spend_day": day,
            **{f"spend/{key}": value for key, value in budget.items()},
            **links,
        }
    )
