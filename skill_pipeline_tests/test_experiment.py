"""The experiment asset locally: scores, the paired comparison of two versions, K trials, the
regression gate on the interval, and the comparison pooled over every skill (offline, end to end)."""

import dagster as dg
import pytest

from skill_pipeline.assets.comparison import POOLED_GATE, prompt_comparison_all_skills
from skill_pipeline.assets.evaluation import prompt_experiment
from skill_pipeline.checks import prompt_experiment_regression
from skill_pipeline.core.challenge_prompt import CURRENT_PROMPT, get_prompt
from skill_pipeline.core.experiment import payload_frame
from skill_pipeline.core.metrics import JUDGED_METRICS
from skill_pipeline.demo.seed import DEMO_SKILLS, demo_skill_id
from skill_pipeline.models import dataset_name
from skill_pipeline_tests.dagster_helpers import local_resources, materialize_skill, metadata, tick

SQL = demo_skill_id("SQL Querying")
V1, TERSE = get_prompt("v1").label, get_prompt("v0-terse").label


@pytest.fixture
def ready(tmp_path):
    """A skill whose dataset holds synthetic and real-world items."""
    resources = local_resources(tmp_path)
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        assert materialize_skill(instance, resources, SQL).success
        yield instance, resources


def _experiment(instance, resources, skill=SQL, **config) -> tuple[dict, dict]:
    result = dg.materialize(
        [prompt_experiment, prompt_experiment_regression],
        instance=instance,
        partition_key=skill,
        resources=resources,
        run_config={"ops": {"prompt_experiment": {"config": config}}} if config else None,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return metadata(result, "prompt_experiment"), checks


def test_current_prompt_scores_every_item_and_records_the_experiment(ready):
    instance, resources = ready
    meta, checks = _experiment(instance, resources)
    assert meta["items_scored"] == 50 and meta["trials"] == 1
    assert meta["baseline_version"] == get_prompt(CURRENT_PROMPT).label
    assert meta["mean"] > 0.9
    assert {"source/synthetic", "source/real_world", "band/1-2", "band/9-10"} <= set(meta)
    assert meta["generator"] == "offline" and meta["dataset_version"]
    assert meta["llm_calls"] == 100  # writer + judge per item
    assert {f"mean/{m}" for m in JUDGED_METRICS} <= set(meta)
    assert isinstance(meta["scores"], dg.TableMetadataValue)
    assert len(payload_frame(meta["paired_scores"])["item_id"].unique()) == 50
    assert checks["prompt_experiment_regression"].passed

    stored = resources["dataset_store"].experiments(dataset_name(SQL))
    assert len(stored) == 1 and stored[0]["config"]["prompt_version"] == meta["baseline_version"]
    assert len(stored[0]["results"]) == 50


def test_v0_terse_against_v1_is_significantly_worse_with_the_interval_in_metadata(ready):
    instance, resources = ready
    meta, checks = _experiment(instance, resources, candidate_version="v0-terse")
    assert meta["candidate_version"] == TERSE and meta["candidate_mean"] < meta["mean"]
    assert meta["verdict"] == "worse" and meta["gate_passes"] is False
    table = meta["comparison"]
    assert isinstance(table, dg.TableMetadataValue)
    rows = {r.data["metric"]: r.data for r in table.records}
    assert {"OptionCount", "SingleCorrectAnswer", "DistractorPlausibility", "RequiresSkill"} <= set(rows)
    for metric in ("OptionCount", "DistractorPlausibility"):
        assert rows[metric]["ci_high"] < 0 and rows[metric]["verdict"] == "worse"
        assert meta[f"ci_low/{metric}"] <= meta[f"diff/{metric}"] <= meta[f"ci_high/{metric}"] < 0
    assert rows["OptionCount"]["mcnemar_p"] < 0.001  # pass/fail: McNemar on the discordant pairs
    assert meta["effect"] < 0 and meta["ci_high"] < 0 and meta["mde"] > 0
    assert len(meta["item_differences"].records) == 50
    check = checks["prompt_experiment_regression"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "worse" in check.metadata["reason"].value and check.metadata["verdict"].value == "worse"
    assert len(resources["dataset_store"].experiments(dataset_name(SQL))) == 2  # one per version


def test_k_trials_run_each_version_k_times_and_report_the_within_item_variance(ready):
    instance, resources = ready
    meta, _ = _experiment(instance, resources, candidate_version="v0-terse", trials=2)
    assert meta["trials"] == 2 and meta["items_scored"] == 50 and meta["llm_calls"] == 400
    rows = {r.data["metric"]: r.data for r in meta["comparison"].records}
    # The offline writer is deterministic: no within-item variance, and it is reported as such.
    assert rows["OptionCount"]["trials"] == 2 and rows["OptionCount"]["within_var_baseline"] == 0.0
    names = [e["name"] for e in resources["dataset_store"].experiments(dataset_name(SQL))]
    assert sorted(names)[0].endswith("-trial1") and len(names) == 4


def test_without_a_candidate_the_gate_compares_with_the_previous_materialisation(ready):
    instance, resources = ready
    _, first = _experiment(instance, resources)
    assert first["prompt_experiment_regression"].passed  # nothing to compare with: threshold only
    meta, worse = _experiment(instance, resources, baseline_version="v0-terse")
    assert meta["mean"] < 0.7
    check = worse["prompt_experiment_regression"]
    assert not check.passed and "under the threshold" in check.metadata["reason"].value
    assert check.metadata["verdict"].value == "worse"
    _, back = _experiment(instance, resources)
    check = back["prompt_experiment_regression"]
    rows = {r.data["metric"]: r.data for r in check.metadata["comparison"].records}
    assert rows["OptionCount"]["verdict"] == "better" and rows["SingleCorrectAnswer"]["verdict"] == "better"
    assert not any(row["verdict"] == "worse" for row in rows.values())
    # Passed, or a warning only where a metric with few items (the real-world-only agreement) is underpowered.
    assert check.passed or (check.severity == dg.AssetCheckSeverity.WARN and check.metadata["verdict"].value == "underpowered")
    # The same prompt again: no metric moved, but the 5 real-world items of ValidatedQuestionAgreement
    # cannot rule out a change of 0.15: underpowered, a warning rather than a pass or an error.
    _, same = _experiment(instance, resources)
    check = same["prompt_experiment_regression"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["verdict"].value == "underpowered" and "ValidatedQuestionAgreement" in check.metadata["reason"].value
    rows = {r.data["metric"]: r.data for r in check.metadata["comparison"].records}
    assert rows["OptionCount"]["verdict"] == "no difference" and rows["OptionCount"]["mde"] < 0.15


def test_unknown_prompt_version_fails_naming_it(ready):
    instance, resources = ready
    with pytest.raises(Exception, match="v9-nope"):
        _experiment(instance, resources, baseline_version="v9-nope")


def test_code_version_follows_the_prompt():
    spec = next(iter(prompt_experiment.specs))
    assert spec.code_version == get_prompt(CURRENT_PROMPT).content_hash


@pytest.mark.slow
def test_pooled_comparison_over_every_demo_skill_end_to_end(tmp_path):
    resources = local_resources(tmp_path)
    active = [demo_skill_id(name) for name, _, is_active in DEMO_SKILLS if is_active]
    with dg.instance_for_test() as instance:
        tick(instance, resources, cursor=None)
        for skill in active:
            assert materialize_skill(instance, resources, skill).success
            _experiment(instance, resources, skill=skill, candidate_version="v0-terse")
        result = dg.materialize([prompt_comparison_all_skills], instance=instance, resources=resources)
        meta = metadata(result, "prompt_comparison_all_skills")
        assert meta["skills"] == len(active) and meta["items"] == 50 * len(active)
        assert meta["baseline_version"] == V1 and meta["candidate_version"] == TERSE
        assert meta["verdict"] == "worse" and meta["ci_high"] < 0 and meta["effect"] < 0
        rows = {r.data["metric"]: r.data for r in meta["comparison"].records}
        assert any("cluster-robust" in r["method"] for r in rows.values()), {m: r["method"] for m, r in rows.items()}
        # Every skill's mean difference is the same -0.7 (balanced difficulties): the cluster-robust SE
        # is 0 and the plain SE is used instead, so the interval keeps a width.
        assert rows["DifficultyAlignment"]["ci_low"] < -0.7 < rows["DifficultyAlignment"]["ci_high"] < 0
        assert len({r.data["skill_id"] for r in meta["per_skill"].records}) == len(active)
        assert meta["cost/llm_calls"] == 200 * len(active)
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == POOLED_GATE and not check.passed
