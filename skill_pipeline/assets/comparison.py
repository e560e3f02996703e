"""Paired comparisons in the UI, and ``prompt_comparison_all_skills``: one prompt change judged over
every skill, with errors clustered by skill.

System of record: each ``prompt_experiment`` materialisation carries its per-item scores as the
``paired_scores`` metadata entry (``core.experiment.frame_payload``: ~20 kB for 50 items, two
versions, K=1), in the instance's event log (Postgres in production). The pooled asset and the
regression check read them back from there, never from an IO manager's pickle, and work the same
with the local and the Opik dataset store (the ``DatasetStore`` interface has no "read an experiment
back" operation; Opik's experiment items hold the same scores, linked from each materialisation).

``core.comparison`` (statsmodels) is imported inside the functions: loading the code location must
not pay for it (``test_structure``).
"""


import math
from typing import TYPE_CHECKING, Any, Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from skill_pipeline.assets.metadata import table
from skill_pipeline.core.challenge_prompt import CURRENT_PROMPT, get_prompt
from skill_pipeline.core.experiment import payload_frame
from skill_pipeline.partitions import skills_partitions

if TYPE_CHECKING:
    from skill_pipeline.core.comparison import ComparisonResult

PROMPT_EXPERIMENT_KEY = dg.AssetKey("prompt_experiment")
POOLED_GATE = "pooled_regression_gate"


def _finite(out: dict[str, Any], key: str, value: float | None) -> None:
    """Set ``key`` to ``value`` rounded, unless it is missing or not finite (NaN, inf: no float to plot)."""
    if value is not None and math.isfinite(value):
        out[key] = round(float(value), 4)


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Rounded, with infinities (an MDE no run size reaches) as missing cells."""
    return frame.replace([math.inf, -math.inf], math.nan).round(4)


def comparison_metadata(result: "ComparisonResult", prefix: str = "") -> dict[str, Any]:
    """Verdict, gate, the per-metric table, and per metric its difference, interval and MDE as floats
    (so Dagster plots them across materialisations)."""
    from skill_pipeline.core.comparison import results_table

    out: dict[str, Any] = {
        f"{prefix}verdict": result.verdict,
        f"{prefix}gate_passes": result.gate_passes,
        f"{prefix}gate_reason": result.gate_reason,
        f"{prefix}comparison": table(_display(results_table(result))),
        f"{prefix}alpha": result.alpha,
        f"{prefix}margin": result.margin,
        f"{prefix}effect_of_interest": result.effect_of_interest,
    }
    for m in result.metrics:
        for stat in ("diff", "ci_low", "ci_high", "mde"):
            _finite(out, f"{prefix}{stat}/{m.metric}", getattr(m, stat))
    decisive = deciding_metric(result)
    if decisive is not None:
        out[f"{prefix}deciding_metric"] = decisive.metric
        for key, value in (("effect", decisive.diff), ("ci_low", decisive.ci_low), ("ci_high", decisive.ci_high),
                           ("mde", decisive.mde)):
            _finite(out, f"{prefix}{key}", value)
    if result.notes:
        out[f"{prefix}notes"] = "; ".join(result.notes)
    return out


def deciding_metric(result: "ComparisonResult"):
    """The metric the overall verdict rests on: the worst drop if any is "worse", the largest MDE if
    "underpowered", else the metric with the lowest upper bound."""
    if not result.metrics:
        return None
    same = [m for m in result.metrics if m.verdict == result.verdict] or result.metrics
    if result.verdict == "underpowered":
        return max(same, key=lambda m: m.mde if m.mde == m.mde else float("inf"))
    if result.verdict == "better":
        return max(same, key=lambda m: m.ci_low)
    return min(same, key=lambda m: m.ci_high)


def verdict_line(result: "ComparisonResult") -> str:
    m = deciding_metric(result)
    where = "" if m is None else (
        f"; {m.metric}: {m.diff:+.3f} [{m.ci_low:+.3f}, {m.ci_high:+.3f}], MDE {m.mde:.3f}")
    return f"{result.candidate} vs {result.baseline} over {len(result.skills)} skill{'s' if len(result.skills) != 1 else ''}: {result.verdict}{where}"


def stored_frame(metadata: dict[str, Any], baseline: str, candidate: Optional[str]) -> pd.DataFrame | None:
    """The per-item frame of a materialisation's metadata when it compared ``baseline`` with
    ``candidate`` (labels; None: any candidate), else None."""
    if metadata.get("baseline_version") != baseline or "paired_scores" not in metadata:
        return None
    if candidate is not None and metadata.get("candidate_version") != candidate:
        return None
    if candidate is None and not metadata.get("candidate_version"):
        return None
    try:
        return payload_frame(metadata["paired_scores"])
    except (ValueError, KeyError, TypeError):
        return None


def _values(materialization: dg.AssetMaterialization | None) -> dict[str, Any]:
    if materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


class PooledComparisonConfig(dg.Config):
    baseline_version: str = Field(default=CURRENT_PROMPT, description="Baseline prompt version (a PROMPTS name).")
    candidate_version: Optional[str] = Field(
        default=None,
        description="Candidate prompt version; unset: the candidate of the newest per-skill comparison "
        "against the baseline.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Significance level (two-sided), Holm across metrics.")
    margin: float = Field(
        default=0.02, ge=0, le=1,
        description="Drop (0–1) tolerated: the gate fails when a metric's interval lies wholly below -margin.",
    )
    effect_of_interest: float = Field(
        default=0.05, gt=0, le=1,
        description="Smallest change that matters; a non-significant metric whose MDE exceeds it is 'underpowered'.",
    )
    history: int = Field(
        default=20, ge=1, le=500,
        description="Materialisations per skill searched, newest first, for one comparing these versions.",
    )


@dg.asset(
    group_name="experiments",
    owners=["team:learning-data"],
    code_version="pooled-v1",
    kinds={"opik"},
    deps=[PROMPT_EXPERIMENT_KEY],
    check_specs=[dg.AssetCheckSpec(POOLED_GATE, asset="prompt_comparison_all_skills",
                                   description="Fails when the pooled comparison finds the candidate worse "
                                   "beyond the margin (Holm across metrics); warns when underpowered.")],
    description=(
        "One prompt change judged over every skill: the newest per-skill paired comparison of the two "
        "versions (from each prompt_experiment materialisation's paired_scores) pooled, with standard "
        "errors clustered by skill. Calls no LLM; per-skill verdicts kept in a table."
    ),
)
def prompt_comparison_all_skills(
    context: dg.AssetExecutionContext, config: PooledComparisonConfig
) -> dg.MaterializeResult:
    from skill_pipeline.core.comparison import NothingPaired, paired_comparison, per_skill

    baseline = get_prompt(config.baseline_version).label
    candidate = get_prompt(config.candidate_version).label if config.candidate_version else None
    frames, per_skill_meta, missing = [], {}, []
    for skill_id in sorted(context.instance.get_dynamic_partitions(skills_partitions.name)):
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PROMPT_EXPERIMENT_KEY, asset_partitions=[skill_id]), limit=config.history
        ).records
        for record in records:
            meta = _values(record.asset_materialization)
            frame = stored_frame(meta, baseline, candidate)
            if frame is not None:
                candidate = candidate or meta["candidate_version"]
                frames.append(frame)
                per_skill_meta[skill_id] = meta
                break
        else:
            missing.append(skill_id)
    if not frames:
        raise dg.Failure(f"no skill has a prompt_experiment comparing {baseline} with {candidate or 'a candidate'}: "
                         "materialise prompt_experiment with candidate_version set first")
    pooled = pd.concat(frames, ignore_index=True)
    kwargs = dict(alpha=config.alpha, margin=config.margin, effect_of_interest=config.effect_of_interest)
    try:
        result = paired_comparison(pooled, baseline, candidate, cluster="skill_id", **kwargs)
    except NothingPaired as exc:
        raise dg.Failure(str(exc)) from exc
    rows = []
    for skill_id, one in per_skill(pooled, baseline, candidate, **kwargs).items():
        meta = per_skill_meta[skill_id]
        for m in one.metrics:
            rows.append({"skill_id": skill_id, "skill_name": meta.get("skill_name", ""), "metric": m.metric,
                         "n": m.n, "diff": m.diff, "ci_low": m.ci_low, "ci_high": m.ci_high, "mde": m.mde,
                         "verdict": m.verdict, "skill_verdict": one.verdict,
                         "experiment": str(meta.get("candidate_experiment_location", ""))})
    context.log.info(verdict_line(result))
    cost = {key: int(sum(meta.get(key, 0) or 0 for meta in per_skill_meta.values()))
            for key in ("llm_calls", "input_tokens", "output_tokens")}
    metadata = {
        "baseline_version": baseline,
        "candidate_version": candidate,
        "skills": len(per_skill_meta),
        "skills_without_comparison": ", ".join(missing) or "none",
        "items": int(pooled[["skill_id", "item_id"]].drop_duplicates().shape[0]),
        **comparison_metadata(result),
        "per_skill": table(_display(pd.DataFrame(rows)), max_rows=500),
        "summary": verdict_line(result),
        **{f"cost/{k}": v for k, v in cost.items()},
    }
    severity = dg.AssetCheckSeverity.WARN if result.verdict == "underpowered" else dg.AssetCheckSeverity.ERROR
    check = dg.AssetCheckResult(
        check_name=POOLED_GATE, passed=result.gate_passes, severity=severity,
        metadata={"verdict": result.verdict, "reason": result.gate_reason,
                  **{k: metadata[k] for k in ("effect", "ci_low", "ci_high", "mde") if k in metadata}},
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
