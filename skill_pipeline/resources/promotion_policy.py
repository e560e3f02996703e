"""The deployment's promotion policy: the gold-standard criteria and ``max_promotions``, set once.

Criteria edited in the launchpad used to apply to that run only, so the next scheduled run went
back to the defaults and re-promoted what a stricter run had retired. The policy is a resource:
the schedule's runs and the UI's launches read the same values, set in the code location's
environment (``SKILL_PIPELINE_PROMOTION_POLICY``: a YAML file of these fields). A run's own config
may still override a field for that run; the asset's metadata says which values came from where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import Field, ValidationError, create_model

from skill_pipeline.models import GoldStandardCriteria

POLICY_FILE_VARIABLE = "SKILL_PIPELINE_PROMOTION_POLICY"


class PromotionPolicy(dg.ConfigurableResource, GoldStandardCriteria):
    """The criteria (fields of ``GoldStandardCriteria``, declared once) and the promotion pace."""

    max_promotions: int = Field(
        default=5, ge=0, le=50,
        description="New real-world items a run may promote per skill (0–50): replacement is gradual.",
    )

    def resolve(self, overrides: dict[str, Any]) -> tuple[GoldStandardCriteria, dict[str, Any]]:
        """The criteria for one run: the deployment's values with the run's overrides applied.

        Returns the criteria and the overrides that were applied (for metadata). A bad override is
        refused naming the field and the value, before anything is read.
        """
        applied = {name: value for name, value in overrides.items() if value is not None}
        values = {name: getattr(self, name) for name in GoldStandardCriteria.model_fields}
        try:
            return GoldStandardCriteria.model_validate({**values, **applied}), applied
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"promotion criteria: {field}={first.get('input')!r} is refused: {first['msg']}") from None


def load_policy(path: str | None) -> PromotionPolicy:
    """The policy from a YAML file of its fields, or the defaults when no file is configured."""
    if not path:
        return PromotionPolicy()
    file = Path(path)
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{POLICY_FILE_VARIABLE}={path!r}: cannot read the promotion policy: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{POLICY_FILE_VARIABLE}={path!r}: expected a mapping of policy fields, got {type(values).__name__}")
    unknown = sorted(set(values) - set(PromotionPolicy.model_fields))
    if unknown:
        raise ValueError(f"{POLICY_FILE_VARIABLE}={path!r}: unknown policy fields {unknown}")
    try:
        return PromotionPolicy(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(
            f"{POLICY_FILE_VARIABLE}={path!r}: {'.'.join(map(str, first['loc']))}={first.get('input')!r} is refused: {first['msg']}"
        ) from None


def override_fields(model: type, suffix: str) -> dict[str, Any]:
    """Optional copies of ``model``'s fields for a run's config: unset means the deployment's value."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        metadata = {key: value for key in ("ge", "le") for m in info.metadata if (value := getattr(m, key, None)) is not None}
        fields[name] = (
            info.annotation | None,
            Field(default=None, description=f"{info.description} {suffix}", **metadata),
        )
    return fields


def criteria_override_config(base: type) -> type:
    """A ``dg.Config`` class with every criterion as an optional per-run override."""
    return create_model(
        "GoldStandardConfig",
        __base__=base,
        __doc__="Per-run overrides of the deployment's gold-standard criteria (resource promotion_policy).",
        **override_fields(GoldStandardCriteria, "Unset: the deployment's value (resource promotion_policy)."),
    )
