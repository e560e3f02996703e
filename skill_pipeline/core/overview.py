"""The all-skills overview: one row per skill from facts the adapter gathers (dataset store, Dagster).

Pure: no orchestrator, no SDK. ``SkillFacts`` is what is known about a skill; ``overview_row`` turns it
into the row the operator reads. Anything unknown is ``None`` here and shown as ``NOT_AVAILABLE``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pydantic import BaseModel, Field

from skill_pipeline.core.promotion_reasons import NOT_CALIBRATED_PREFIX

NOT_AVAILABLE = "n/a"


def is_calibrated(status: str) -> bool:
    """Confirmed, moved to its calibrated level, or calibrated without a label: all but "not calibrated: …"."""
    return not status.startswith(NOT_CALIBRATED_PREFIX)


class SkillFacts(BaseModel):
    skill_id: str
    name: str
    items: int = 0
    real_world: int = 0
    eligible: int | None = Field(default=None, description="eligible challenges at the latest scoring; None: never scored")
    calibration: dict[str, int] | None = Field(default=None, description="challenges by calibration status")
    last_run: str | None = Field(default=None, description="status (and job) of the partition's newest run")
    checks: dict[str, bool] | None = Field(default=None, description="check name -> passed, of the newest dataset run")
    costs: list[float | None] = Field(
        default_factory=list,
        description="estimated_cost_usd of each scenario generation: a float, or None when unpaid or unknown",
    )
    unknown_cost: bool = Field(default=False, description="a paid generation whose model has no list price")
    spend_today_usd: float | None = Field(
        default=None, description="USD the skill's paid calls cost today (spend ledger); None: no paid call today"
    )
    location: str = ""


class OverviewRow(BaseModel):
    """One skill's row; the id and dataset location last (long, and read least)."""

    skill: str
    items: int
    synthetic: int
    real_world: int
    real_pct: float
    eligible_not_promoted: int | str
    calibrated: int | str
    uncalibrated: int | str
    last_run: str
    checks: str
    llm_cost_usd: float | str
    spend_today_usd: float | str
    skill_id: str
    dataset: str


def real_pct(real_world: int, items: int) -> float:
    return round(100 * real_world / items, 1) if items else 0.0


def cost_to_date(costs: Iterable[float | None], unknown: bool = False) -> float | None:
    """Sum of the paid generations; None when nothing was paid (offline) or a cost is unknown."""
    paid = [c for c in costs if c is not None]
    if unknown or not paid:
        return None
    return round(sum(paid), 6)


def checks_summary(checks: dict[str, bool] | None) -> str:
    if not checks:
        return NOT_AVAILABLE
    failed = sorted(name for name, passed in checks.items() if not passed)
    text = f"{len(checks) - len(failed)}/{len(checks)} passed"
    return f"{text}; failed: {', '.join(failed)}" if failed else text


def overview_row(facts: SkillFacts) -> OverviewRow:
    if facts.calibration is None:
        calibrated: int | str = NOT_AVAILABLE
        uncalibrated: int | str = NOT_AVAILABLE
    else:
        calibrated = sum(n for status, n in facts.calibration.items() if is_calibrated(status))
        uncalibrated = sum(n for status, n in facts.calibration.items() if not is_calibrated(status))
    eligible = NOT_AVAILABLE if facts.eligible is None else max(0, facts.eligible - facts.real_world)
    cost = cost_to_date(facts.costs, facts.unknown_cost)
    return OverviewRow(
        skill=facts.name,
        skill_id=facts.skill_id,
        items=facts.items,
        synthetic=facts.items - facts.real_world,
        real_world=facts.real_world,
        real_pct=real_pct(facts.real_world, facts.items),
        eligible_not_promoted=eligible,
        calibrated=calibrated,
        uncalibrated=uncalibrated,
        last_run=facts.last_run or "no run yet",
        checks=checks_summary(facts.checks),
        llm_cost_usd=NOT_AVAILABLE if cost is None else cost,
        spend_today_usd=NOT_AVAILABLE if facts.spend_today_usd is None else facts.spend_today_usd,
        dataset=facts.location,
    )


def overview_frame(rows: list[OverviewRow]) -> pd.DataFrame:
    """The rows as a frame, ordered by skill name; mixed number/"n/a" columns stay text."""
    frame = pd.DataFrame([r.model_dump() for r in rows], columns=list(OverviewRow.model_fields))
    return frame.sort_values("skill", kind="stable").reset_index(drop=True)


def overall_real_pct(rows: list[OverviewRow]) -> float:
    return real_pct(sum(r.real_world for r in rows), sum(r.items for r in rows))


def total_cost(rows: list[OverviewRow]) -> float | None:
    """Sum over skills with a known paid cost; None when no skill has one."""
    paid = [r.llm_cost_usd for r in rows if isinstance(r.llm_cost_usd, float)]
    return round(sum(paid), 6) if paid else None


def share_keys(rows: list[OverviewRow]) -> dict[str, float]:
    """``real_world_pct/<skill name>`` per skill (a Plots-tab line each) and ``real_world_pct/overall``.

    Two skills of the same name are told apart by the start of their id."""
    names = [r.skill for r in rows]
    keys: dict[str, float] = {}
    for row in rows:
        label = row.skill if names.count(row.skill) == 1 else f"{row.skill} ({row.skill_id[:8]})"
        keys[f"real_world_pct/{label}"] = row.real_pct
    keys["real_world_pct/overall"] = overall_real_pct(rows)
    return keys
