"""The experiment asset locally: scores, side-by-side comparison, and the regression check."""

import dagster as dg
import pytest

from skill_pipeline.assets.evaluation import prompt_experiment
from skill_pipeline.core.challenge_prompt import CURRENT_PROMPT, get_prompt
from skill_pipeline.checks import prompt_experiment_regression
from skill_pipeline.demo.seed import demo_skill_id
from skill_pipeline.models import dataset_name
from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

SQL = demo_skill_id("SQL Querying")


@pytest.fixture
def ready(tmp_path):
    """A skill whose dataset holds synthetic and real-world items."""
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        assert materialize_skill(instance, resources, SQL).success
        yield instance, resources


def _experiment(instance, resources, **config) -> tuple[dict, dict[str, bool]]:
    result = dg.materialize(
        [prompt_experiment, prompt_experiment_regression],
        instance=instance,
        partition_key=SQL,
        resources=resources,
        run_config={"ops": {"prompt_experiment": {"config": config}}} if config else None,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return metadata(result, "prompt_experiment"), checks


def test_current_prompt_scores_every_item_and_records_the_experiment(ready):
    instance, resources = ready
    meta, checks = _experiment(instance, resources)
    assert meta["items_scored"] == 50
    assert meta["prompt_version"] == get_prompt(CURRENT_PROMPT).label
    assert meta["mean"] > 0.9
    assert {"source/synthetic", "source/real_world", "band/1-2", "band/9-10"} <= set(meta)
    assert meta["generator"] == "offline" and meta["dataset_version"]
    assert checks["prompt_experiment_regression"].passed

    stored = resources["dataset_store"].experiments(dataset_name(SQL))
    assert len(stored) == 1 and stored[0]["config"]["prompt_version"] == meta["prompt_version"]
    assert len(stored[0]["results"]) == 50


def test_regression_check_fails_on_a_worse_prompt_and_passes_on_the_current_one(ready):
    instance, resources = ready
    _, first = _experiment(instance, resources)
    assert first["prompt_experiment_regression"].passed
    meta, worse = _experiment(instance, resources, prompt_version="v0-terse")
    assert meta["mean"] < 0.7
    assert not worse["prompt_experiment_regression"].passed
    assert "under the threshold" in worse["prompt_experiment_regression"].metadata["reason"].value
    _, back = _experiment(instance, resources)
    assert back["prompt_experiment_regression"].passed


def test_comparing_two_prompt_versions_side_by_side(ready):
    instance, resources = ready
    meta, _ = _experiment(instance, resources, candidate_prompt_version="v0-terse")
    assert meta["candidate_prompt_version"].startswith("v0-terse")
    assert meta["candidate_mean"] < meta["mean"]
    table = meta["comparison"]
    assert "v0-terse" in table and "OptionCount" in table


def test_unknown_prompt_version_fails_naming_it(ready):
    instance, resources = ready
    with pytest.raises(Exception, match="v9-nope"):
        _experiment(instance, resources, prompt_version="v9-nope")


def test_code_version_follows_the_prompt():
    spec = next(iter(prompt_experiment.specs))
    assert spec.code_version == get_prompt(CURRENT_PROMPT).content_hash
