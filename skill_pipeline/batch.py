"""``new_skills_batch``: many new skills in one run, each skill still materialised (and failing) on its own.

Why: one run per skill costs several seconds of process start and code load, and the sensor ~1.4 s
to create each run (DESIGN.md, "Orchestration has a price"); on the first day that is most of the
time. A run over a partition range would cut it, but in Dagster 1.13.27 a ranged run carries one
metadata for every partition, fails every partition when one fails, and the filesystem IO manager
cannot store a ranged output. So the sensor hands a batch of *new* skills to this op job instead:

- one step (in the ``anthropic`` pool, like ``synthetic_scenarios``) writes the missing scenarios of
  every skill of the batch under one concurrency bound (every difficulty pooled as soon as it is
  valid), then scores each skill's candidates and syncs its dataset;
- for each skill it reports what the asset steps would: a materialisation of ``synthetic_scenarios``,
  ``gold_standard_candidates`` and ``skill_dataset`` for that skill's partition, each with that
  skill's own metadata, and the evaluations of the asset checks on what was read back from the store;
- a skill that fails is set aside (its error logged with its id) and the others go on; the run fails
  at the end naming the failed skills, and the sensor requests each of them again as a run of its
  own (``skill_dataset_job``). The run is not retried by Dagster (``dagster/max_retries: 0``): a
  retried batch would redo every skill to reach the failed one.

Known gap: after a skill of the batch failed, the others are asked again only for what the cancelled
calls left missing, and their ``llm_calls`` / cost metadata count only those last calls (the scenarios
themselves were pooled; nothing paid for is lost). The step's outputs are not stored by the IO manager: a later run of ``skill_dataset`` selects
``gold_standard_candidates`` with it (the ``promotion`` job and the schedule do).
"""


from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from skill_pipeline.assets.dataset import skill_dataset, sync_skill_dataset
from skill_pipeline.assets.generation import (
    current_pool,
    missing_count,
    scenarios_frame,
    scenarios_metadata,
    synthetic_scenarios,
)
from skill_pipeline.assets.promotion import gold_standard_candidates, score_skill
from skill_pipeline.checks import dataset_verdicts, scenarios_verdict
from skill_pipeline.core import audit
from skill_pipeline.core.budget import BudgetExceeded
from skill_pipeline.core.generation import SyntheticScenario
from skill_pipeline.core.scenario_writing import ScenarioGenerationError
from skill_pipeline.jobs import LLM_TAGS
from skill_pipeline.models import Skill, TokenUsage, dataset_name
from skill_pipeline.resources.dataset_store import DatasetStore
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.promotion_policy import PromotionPolicy
from skill_pipeline.resources.skill_store import SkillStore

BATCH_TAG = "skill_pipeline/batch"  # on the run: the batch id the sensor gave it
BATCH_RUN_TAG = "skill_pipeline/batch_run"  # on each reported materialisation: the run that made it
OP_NAME = "new_skills"
# Restarts of the batch's generation after a skill-specific failure: past this, the failure is taken
# to be the service's (deadline passed, service down) and every skill still missing scenarios is
# failed at once, to be retried as runs of their own with the sensor's backoff.
MAX_RESTARTS = 2


class NewSkillsConfig(dg.Config):
    skill_ids: list[str] = Field(description="The new skills (partition keys) this run writes the scenarios and datasets of.")


def run_config(skill_ids: list[str]) -> dict:
    return {"ops": {OP_NAME: {"config": {"skill_ids": list(skill_ids)}}}}


def _check(asset_key: dg.AssetKey, name: str, verdict: audit.Verdict, partition: str) -> dg.AssetCheckEvaluation:
    metadata: dict = {"detail": verdict.detail}
    if verdict.failures:
        metadata["failures"] = dg.MetadataValue.md("\n".join(f"- {f}" for f in verdict.failures))
    return dg.AssetCheckEvaluation(
        asset_key=asset_key, check_name=name, passed=verdict.passed, metadata=metadata, partition=partition
    )


def _generate(
    context: dg.OpExecutionContext,
    skills: list[Skill],
    pools: dict[str, list[SyntheticScenario]],
    llm: ScenarioLLM,
    dataset_store: DatasetStore,
    failed: dict[str, str],
    near_duplicates: dict[str, int],
) -> dict[str, tuple[int, TokenUsage, str | None]]:
    """Write the missing scenarios of ``skills`` (pooling each difficulty at once); a skill whose calls
    fail goes to ``failed`` and the rest are asked again for what is still missing. Returns the calls,
    usage and model per skill that needed the LLM."""
    by_id = {s.id: s for s in skills}
    spent: dict[str, tuple[int, TokenUsage, str | None]] = {}
    # One guard for the batch's run; each call is attributed to its skill in the spend ledger.
    guard = llm.spend_guard(context.run, f"batch of {len(skills)} skills")
    remaining = [s for s in skills if missing_count(pools[s.id])]
    restarts = 0

    def store(skill_id: str, difficulty: int, scenarios: list[SyntheticScenario]) -> None:
        dataset_store.write_pool(by_id[skill_id], scenarios)

    while remaining:
        try:
            results = llm.generate(remaining, keep={s.id: pools[s.id] for s in remaining}, on_difficulty_done=store,
                                   guard=guard)
        except BudgetExceeded as exc:  # the deployment's spend cap: stop asking; what was pooled stays
            for skill in remaining:
                failed[skill.id] = f"stopped by the spend budget: {exc}"
            context.log.error(f"{len(remaining)} skills left without scenarios: {exc}")
            return spent
        except ScenarioGenerationError as exc:
            if exc.skill_id in by_id and restarts < MAX_RESTARTS:
                restarts += 1
                failed[exc.skill_id] = str(exc)
                context.log.error(f"skill {exc.skill_id}: {exc}; the other skills of the batch go on")
                remaining = [s for s in remaining if s.id != exc.skill_id]
                for skill in remaining:  # what the cancelled calls left missing, from the durable pool
                    pools[skill.id], _ = current_pool(skill, dataset_store)
                continue
            for skill in remaining:
                failed[skill.id] = f"scenario generation failed for the batch: {exc}"
            context.log.error(f"{len(remaining)} skills without scenarios: {exc}")
            return spent
        for skill in remaining:
            result = results[skill.id]
            pools[skill.id] = result.rows
            spent[skill.id] = (result.calls, result.usage, result.model)
            near_duplicates[skill.id] = result.near_duplicates_dropped
        remaining = []
    return spent


@dg.op(
    name=OP_NAME,
    out={},  # everything it makes is reported per skill (materialisations, check results)
    pool="anthropic",
    description="Scenarios (one LLM concurrency bound for the batch), candidates and dataset of each new "
    "skill; materialisations and check results reported per skill; failed skills named, the others kept.",
)
def new_skills(
    context: dg.OpExecutionContext,
    config: NewSkillsConfig,
    skill_store: SkillStore,
    dataset_store: DatasetStore,
    llm: ScenarioLLM,
    promotion_policy: PromotionPolicy,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    failed: dict[str, str] = {}
    skills: list[Skill] = []
    pools: dict[str, list[SyntheticScenario]] = {}
    whys: dict[str, str] = {}
    for skill_id in config.skill_ids:
        try:
            skill = skill_store.get_skill(skill_id)
            pools[skill.id], whys[skill.id] = current_pool(skill, dataset_store)
            skills.append(skill)
        except Exception as exc:  # one skill's store error must not cost the others
            failed[skill_id] = f"{type(exc).__name__}: {exc}"
    before = {s.id: len(pools[s.id]) for s in skills}
    missing = {s.id: missing_count(pools[s.id]) for s in skills}
    if llm.generator == "offline" and dataset_store.is_remote and any(missing.values()):
        raise dg.Failure(
            description=f"scenarios would be written by the offline writer into {dataset_store.backend}; set "
            "ANTHROPIC_API_KEY, or unset the Opik variables to use the local dataset store"
        )
    context.log.info(
        f"{len(skills)} skills, {sum(missing.values())} scenarios to write with {llm.service}; "
        f"{sum(1 for m in missing.values() if not m)} complete from the store"
    )
    near_duplicates: dict[str, int] = {}
    spent = _generate(context, skills, pools, llm, dataset_store, failed, near_duplicates)
    criteria, overridden = promotion_policy.resolve({})
    for skill in skills:
        if skill.id in failed:
            continue
        try:
            events = list(_report_skill(context, skill, pools[skill.id], whys[skill.id], before[skill.id],
                                        missing[skill.id], spent.get(skill.id), llm, skill_store, dataset_store,
                                        promotion_policy, criteria, overridden, near_duplicates.get(skill.id, 0)))
        except Exception as exc:  # this skill's candidates or sync failed: the others go on
            failed[skill.id] = f"{type(exc).__name__}: {exc}"
            context.log.error(f"skill {skill.id}: {failed[skill.id]}")
            continue
        yield from events
    done = len(config.skill_ids) - len(failed)
    context.log.info(f"{done} of {len(config.skill_ids)} skills have their dataset; {len(failed)} failed")
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(config.skill_ids)} skills failed (the sensor requests each again "
            f"as a run of its own): " + "; ".join(f"{k}: {v[:300]}" for k, v in sorted(failed.items())),
            metadata={"failed_skills": dg.MetadataValue.json(sorted(failed)), "skills_done": done},
        )


def _report_skill(
    context, skill, pool, why, pool_before, missing, spent, llm, skill_store, dataset_store, promotion_policy,
    criteria, overridden, near_duplicates,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """What the asset steps and their checks would record for this skill's partition."""
    calls, usage, model = spent or (0, TokenUsage(), None)
    frame = scenarios_frame(pool)
    scenario_meta = scenarios_metadata(
        skill, pool, frame, why=why, complete=not missing, missing=missing, pool_before=pool_before,
        calls=calls, usage=usage, model=model, generator=llm.generator, near_duplicates=near_duplicates,
    )
    tags = {BATCH_RUN_TAG: context.run_id}
    yield dg.AssetMaterialization(synthetic_scenarios.key, partition=skill.id, metadata=scenario_meta, tags=tags)
    yield _check(synthetic_scenarios.key, "synthetic_scenarios_are_complete", scenarios_verdict(pool), skill.id)
    candidates, candidate_meta = score_skill(skill.id, skill_store, dataset_store, criteria, overridden, context.log)
    yield dg.AssetMaterialization(gold_standard_candidates.key, partition=skill.id, metadata=candidate_meta, tags=tags)
    dataset_meta = sync_skill_dataset(skill, candidates, dataset_store, promotion_policy.max_promotions,
                                      promotion_policy.near_duplicate_threshold, context.log)
    yield dg.AssetMaterialization(
        skill_dataset.key,
        partition=skill.id,
        metadata={"skill_name": skill.name, "max_promotions": promotion_policy.max_promotions,
                  "max_promotions_from": "deployment", **dataset_meta},
        tags=tags,
    )
    items = dataset_store.read_items(dataset_name(skill.id))
    for name, verdict in dataset_verdicts(skill, items, candidates).items():
        yield _check(skill_dataset.key, name, verdict, skill.id)


@dg.job(
    name="new_skills_batch",
    tags={**LLM_TAGS, "dagster/max_retries": "0"},
    description="What the skill sensor runs for many new skills at once: scenarios, candidates and dataset of "
    "each, reported per skill (materialisations, check results); a failed skill is named and requested again "
    "on its own by the sensor. Config: ops.new_skills.config.skill_ids.",
)
def new_skills_batch_job() -> None:
    new_skills()
