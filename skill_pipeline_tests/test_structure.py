"""The layout keeps its promises: a pure core, thin adapters, small rooms, a launchpad that explains itself."""

import ast
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from skill_pipeline.definitions import build_definitions

PACKAGE = Path(__file__).resolve().parent.parent / "skill_pipeline"
SDKS = ("dagster", "opik", "anthropic", "supabase", "postgrest", "httpx")
MAX_LINES = 450


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_orchestrator_and_no_sdk():
    """Importing every core module in a fresh interpreter leaves Dagster and the SDKs unloaded."""
    modules = sorted(f"skill_pipeline.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__")
    assert len(modules) >= 5
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"loaded = sorted(n for n in {SDKS!r} if n in sys.modules)\n"
        + "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core pulled in {out.stdout.strip()}"


def test_no_resource_imports_the_demo():
    offenders = [
        p.name for p in (PACKAGE / "resources").glob("*.py") if any(m.startswith("skill_pipeline.demo") for m in _imports(p))
    ]
    assert offenders == []


def test_no_module_of_the_package_is_over_the_size_limit():
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_code_location_load_imports_no_sdk():
    """Every run of a job loads the code location in its own process: the SDKs load where they are used."""
    code = (
        "import sys, skill_pipeline.definitions\n"
        "print(','.join(sorted(n for n in ('opik', 'anthropic', 'supabase', 'sklearn', 'statsmodels') if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _fields(config_type, where: str):
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield f"{where}.{name}", field
        yield from _fields(field.config_type, f"{where}.{name}")


@pytest.mark.parametrize(
    "env",
    [{}, {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_KEY": "k", "OPIK_URL_OVERRIDE": "http://127.0.0.1:9/api",
          "ANTHROPIC_API_KEY": "k"}],
    ids=["embedded", "production"],
)
def test_every_config_field_has_a_description(env):
    """What the launchpad shows: Dagster reads ``Field(description=...)``, never attribute docstrings."""
    defs = build_definitions(env)
    seen: dict[str, str] = {}
    # Loaded under a live instance, as a code server does (an earlier test's schedule context can
    # leave Dagster's defs-state storage pointing at a disposed test instance).
    with dg.instance_for_test():
        jobs = defs.get_repository_def().get_all_jobs()
    for job in jobs:
        for node in job.graph.node_defs:
            schema = getattr(node, "config_schema", None)
            if schema is not None and getattr(schema, "config_type", None) is not None:
                seen.update({k: (f.description or "") for k, f in _fields(schema.config_type, node.name)})
    for key, resource in defs.resources.items():
        schema = resource.get_resource_definition().config_schema
        seen.update({k: (f.description or "") for k, f in _fields(schema.config_type, f"resource:{key}")})
    assert len(seen) >= 10
    assert [k for k, d in seen.items() if not d.strip()] == []


def test_criteria_are_declared_once():
    """The deployment's policy is the core's criteria class; the launchpad's overrides are derived
    from it field by field, with its descriptions and bounds."""
    from skill_pipeline.assets.promotion import GoldStandardConfig
    from skill_pipeline.models import GoldStandardCriteria
    from skill_pipeline.resources.promotion_policy import PromotionPolicy

    assert issubclass(PromotionPolicy, GoldStandardCriteria) and issubclass(GoldStandardConfig, dg.Config)
    assert set(GoldStandardConfig.model_fields) == set(GoldStandardCriteria.model_fields)
    for name, info in GoldStandardCriteria.model_fields.items():
        assert GoldStandardConfig.model_fields[name].description.startswith(info.description)
    with pytest.raises(ValueError, match="min_judge_score"):
        GoldStandardConfig(min_judge_score=7)
    with pytest.raises(ValueError, match="min_judge_score"):
        PromotionPolicy(min_judge_score=7)
