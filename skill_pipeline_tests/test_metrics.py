"""Every metric on hand-written good and bad challenges (expected values computed by hand), the
not-applicable convention, Opik's own scoring path, and the aggregation / regression verdict."""

from __future__ import annotations

import math

import opik
import pytest
from opik.evaluation.engine import metrics_evaluator
from opik.evaluation.metrics.base_metric import BaseMetric
from opik.evaluation.types import ErrorTolerance

from skill_pipeline.core.challenge_prompt import Challenge
from skill_pipeline.core.composition import candidate_to_item
from skill_pipeline.core.experiment import (
    ScoreRow,
    comparison_frame,
    comparison_rows,
    difficulty_band,
    regression_verdict,
    summarise_scores,
)
from skill_pipeline.core.generation import SyntheticScenario, scenario_to_item
from skill_pipeline.core.metrics import (
    ALL_METRICS,
    METRIC_NAMES,
    AnswerValidity,
    ChallengeTaskOutput,
    ConceptCoverage,
    DifficultyAlignment,
    ExplanationPresent,
    LengthWithinBounds,
    OptionCount,
    ValidatedQuestionAgreement,
    all_metrics,
    jaccard,
    score_challenge,
    score_values,
)
from skill_pipeline.models import Candidate, DatasetItem, Skill, TokenUsage
from skill_pipeline.resources.opik_metrics import opik_metrics

SKILL = Skill(id="skill-git", name="Git version control", description="Branching, merging and merge conflicts.")


def synthetic_item(difficulty: int = 5, concepts: list[str] | None = None) -> DatasetItem:
    row = SyntheticScenario(
        item_key=f"synthetic-d{difficulty:02d}-s1",
        slot=1,
        difficulty=difficulty,
        scenario="Two feature branches change the same file just before a release is cut.",
        expected_concepts=concepts or ["branching", "merge conflicts"],
        generator="offline",
        model="offline-writer-v1",
        prompt_version="scenarios-test",
        skill_fingerprint=SKILL.fingerprint,
        created_at="2026-11-01T00:00:00+00:00",
    )
    return scenario_to_item(SKILL, row)


def real_world_item() -> DatasetItem:
    candidate = Candidate(
        challenge_id="ch-9",
        difficulty=5,
        question="Which command rewrites commit history?",
        options=["git log", "git rebase", "git status", "git fetch"],
        correct_option=1,
        explanation="Rebase creates new commits.",
        eligible=True,
    )
    return candidate_to_item(SKILL, candidate)


GOOD = {
    "question": "Two feature branches changed the same file before a release. How do you resolve the merge conflicts "
    "while keeping the branching model simple?",
    "options": [
        "Delete one of the branches",
        "Merge main into the feature branch, resolve the conflicts, then merge back",
        "Force-push the older branch over main",
        "Disable branching for the release",
    ],
    "correct_index": 1,
    "explanation": "Merging main first surfaces the conflicts on the feature branch, where they can be resolved "
    "and tested before main changes.",
    "difficulty": 5,
}


def good(**changes) -> dict:
    return {**GOOD, **changes}


def score(metric, challenge, item: DatasetItem, judged_difficulty: int | None = 5):
    """Call a metric with the keyword arguments ``opik.evaluate`` passes (item content + task output)."""
    output = {"challenge": challenge, "judged_difficulty": judged_difficulty, "prompt_version": "v1"}
    return metric.score(**item.data(), **output)


# --- the metric objects ---------------------------------------------------------------------------


def test_metrics_are_wrapped_as_opik_metrics_that_never_track():
    assert [m.name for m in all_metrics()] == list(METRIC_NAMES) == [cls.__name__ for cls in ALL_METRICS]
    metrics = opik_metrics()
    assert [m.name for m in metrics] == list(METRIC_NAMES)
    for metric in metrics:
        assert isinstance(metric, BaseMetric)
        assert metric.track is False
        # A tracked metric has its score wrapped by opik.track; ours is the plain bound method.
        assert metric.score.__func__ is type(metric).score


# --- OptionCount ----------------------------------------------------------------------------------


def test_option_count_good():
    result = score(OptionCount(), GOOD, synthetic_item())
    assert (result.name, result.value) == ("OptionCount", 1.0)


@pytest.mark.parametrize(
    "options",
    [
        ["a", "b", "c"],
        ["a", "b", "c", "d", "e"],
        ["Rebase", " rebase ", "merge", "log"],  # duplicates once case and spacing are ignored
        ["a", "b", "c", "  "],
    ],
)
def test_option_count_bad(options):
    result = score(OptionCount(), good(options=options, correct_index=0), synthetic_item())
    assert result.value == 0.0 and "4 required" in result.reason


def test_option_count_follows_the_items_characteristics():
    item = synthetic_item()
    item.expected_output["question_characteristics"]["option_count"] = 3
    assert score(OptionCount(), good(options=["a", "b", "c"]), item).value == 1.0


# --- ExplanationPresent ---------------------------------------------------------------------------


def test_explanation_present_good_and_at_the_minimum():
    assert score(ExplanationPresent(), GOOD, synthetic_item()).value == 1.0
    assert score(ExplanationPresent(), good(explanation="Merging first surfaces the conflicts."), synthetic_item()).value == 1.0


@pytest.mark.parametrize("explanation", ["", "   ", "Because merging.", "It is option two"])
def test_explanation_present_bad(explanation):
    result = score(ExplanationPresent(), good(explanation=explanation), synthetic_item())
    assert result.value == 0.0 and "at least 5" in result.reason


def test_explanation_missing_from_the_reply_scores_zero():
    challenge = {k: v for k, v in GOOD.items() if k != "explanation"}
    assert score(ExplanationPresent(), challenge, synthetic_item()).value == 0.0


def test_explanation_not_required_is_not_applicable():
    item = synthetic_item()
    item.expected_output["question_characteristics"]["must_have_explanation"] = False
    assert score(ExplanationPresent(), good(explanation=""), item) == []


# --- LengthWithinBounds ---------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [(10, 1.0), (120, 1.0), (500, 1.0), (9, 0.0), (501, 0.0)])
def test_length_within_bounds_at_the_edges(length, expected):
    question = ("q" * (length - 1)) + "?"
    result = score(LengthWithinBounds(), good(question=question), synthetic_item())
    assert result.value == expected and f"{length} characters" in result.reason


def test_length_counts_the_stripped_question():
    assert score(LengthWithinBounds(), good(question="   Why?    "), synthetic_item()).value == 0.0


# --- ConceptCoverage ------------------------------------------------------------------------------


def test_concept_coverage_good():
    result = score(ConceptCoverage(), GOOD, synthetic_item())
    assert result.value == 1.0 and result.reason == "2 of 2 required concepts covered"


def test_concept_coverage_counts_question_options_and_explanation():
    challenge = good(
        question="A release is close and two teams edited the same file. What now?",
        options=["Ask for a merge conflict review", "Wait", "Delete the file", "Ignore it"],
        explanation="Reviewing the conflict with both teams keeps the release safe and everybody informed.",
    )
    # "merge conflicts" is covered word by word ("merge", "conflict" ~ "conflicts"); "branching" is not.
    result = score(ConceptCoverage(), challenge, synthetic_item())
    assert result.value == 0.5 and "missing: branching" in result.reason


def test_concept_coverage_partial_of_three():
    item = synthetic_item(concepts=["branching", "merge conflicts", "fast-forward"])
    result = score(ConceptCoverage(), GOOD, item)  # GOOD never mentions a fast-forward
    assert result.value == pytest.approx(2 / 3)
    challenge = good(explanation=GOOD["explanation"] + " A fast forward is impossible here.")
    assert score(ConceptCoverage(), challenge, item).value == 1.0


def test_concept_coverage_bad():
    challenge = good(question="Which statement about Git is correct?", explanation="It is the second one, clearly.",
                     options=["one", "two", "three", "four"])
    assert score(ConceptCoverage(), challenge, synthetic_item()).value == 0.0


def test_concept_coverage_does_not_apply_without_required_concepts():
    assert score(ConceptCoverage(), GOOD, real_world_item()) == []


# --- DifficultyAlignment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judged", "expected"),
    [(5, 1.0), (4, 1.0), (6, 1.0), (7, 2 / 3), (8, 1 / 3), (9, 0.0), (10, 0.0), (3, 2 / 3), (1, 0.0)],
)
def test_difficulty_alignment(judged, expected):
    result = score(DifficultyAlignment(), GOOD, synthetic_item(difficulty=5), judged_difficulty=judged)  # range 4-6
    assert result.value == pytest.approx(expected)
    assert f"judged difficulty {judged}" in result.reason and "4-6" in result.reason


def test_difficulty_alignment_without_an_estimate_scores_zero():
    result = score(DifficultyAlignment(), GOOD, synthetic_item(), judged_difficulty=None)
    assert result.value == 0.0 and "no difficulty estimate" in result.reason


def test_difficulty_alignment_ignores_the_writers_own_claim():
    # The challenge says 5 (in range) but the judge says 9: the judge decides.
    assert score(DifficultyAlignment(), good(difficulty=5), synthetic_item(5), judged_difficulty=9).value == 0.0


# --- AnswerValidity -------------------------------------------------------------------------------


def test_answer_validity_good():
    result = score(AnswerValidity(), GOOD, synthetic_item())
    assert result.value == 1.0 and "option 1 of 4" in result.reason


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"correct_index": 4}, "correct_index 4 is not an option index"),
        ({"correct_index": -1}, "correct_index -1 is not an option index"),
        ({"options": ["a", "", "c", "d"]}, "1 empty options"),
        ({"options": ["git log", "Git  Log", "c", "d"]}, "duplicate options"),
        ({"options": ["only one"], "correct_index": 0}, "1 options, at least 2 needed"),
    ],
)
def test_answer_validity_bad(changes, problem):
    result = score(AnswerValidity(), good(**changes), synthetic_item())
    assert result.value == 0.0 and problem in result.reason


# --- ValidatedQuestionAgreement -------------------------------------------------------------------


def test_jaccard_by_hand():
    # {which, command, rewrite, commit, history} vs {which, command, show, commit, history}: 4 / 6
    assert jaccard("Which command rewrites commit history?", "Which command shows commit history?") == pytest.approx(4 / 6)
    assert jaccard("git rebase", "git log") == pytest.approx(1 / 3)
    assert jaccard("", "") == 1.0 and jaccard("a b", "") == 0.0


def test_agreement_identical_challenge_scores_one():
    item = real_world_item()
    challenge = good(question="Which command rewrites commit history?", options=["git log", "git rebase", "git tag", "git add"])
    result = score(ValidatedQuestionAgreement(), challenge, item)
    assert result.value == pytest.approx(1.0)


def test_agreement_by_hand():
    item = real_world_item()
    same_answer = good(question="Which command shows commit history?", options=["git rebase", "b", "c", "d"], correct_index=0)
    # 0.5 × 4/6 + 0.5 × 1
    assert score(ValidatedQuestionAgreement(), same_answer, item).value == pytest.approx(5 / 6)
    other_answer = good(question="Which command shows commit history?", options=["git log", "b", "c", "d"], correct_index=0)
    # 0.5 × 4/6 + 0.5 × 1/3
    assert score(ValidatedQuestionAgreement(), other_answer, item).value == pytest.approx(0.5)


def test_agreement_bad():
    item = real_world_item()
    unrelated = good(question="What colour is the sky?", options=["blue", "green", "red", "grey"], correct_index=0)
    assert score(ValidatedQuestionAgreement(), unrelated, item).value == 0.0
    broken_index = good(question="Which command rewrites commit history?", correct_index=9)
    # Same question, but no correct answer to compare: 0.5 × 1 + 0.5 × 0
    assert score(ValidatedQuestionAgreement(), broken_index, item).value == pytest.approx(0.5)


def test_agreement_does_not_apply_to_synthetic_items():
    assert score(ValidatedQuestionAgreement(), GOOD, synthetic_item()) == []


# --- no challenge at all --------------------------------------------------------------------------


def test_a_missing_challenge_scores_zero_everywhere_it_applies():
    results = score_challenge(
        ChallengeTaskOutput(challenge=None, parse_error="no JSON object", prompt_version="v1"), synthetic_item()
    )
    assert set(results) == set(METRIC_NAMES) - {"ValidatedQuestionAgreement"}
    assert all(r.value == 0.0 and "could not be parsed" in r.reason for r in results.values())


def test_a_malformed_challenge_in_the_output_scores_zero():
    result = score(OptionCount(), {"question": "Which?"}, synthetic_item())
    assert result.value == 0.0 and "invalid" in result.reason


# --- the local scoring path and Opik's ------------------------------------------------------------


def test_score_challenge_on_a_good_synthetic_challenge():
    output = ChallengeTaskOutput(
        challenge=Challenge(**GOOD), judged_difficulty=5, prompt_version="v1", usage=TokenUsage(input_tokens=900, output_tokens=200),
        single_correct_answer=True, distractor_plausibility=5, requires_skill=5,
    )
    values = score_values(score_challenge(output, synthetic_item()))
    assert values == {name: 1.0 for name in METRIC_NAMES if name != "ValidatedQuestionAgreement"}


def test_score_challenge_refuses_output_keys_that_shadow_the_item():
    with pytest.raises(ValueError, match="metadata"):
        score_challenge({"challenge": GOOD, "judged_difficulty": 5, "metadata": {}}, synthetic_item())


@pytest.fixture
def tracing_off():
    previous = opik.is_tracing_active()
    opik.set_tracing_active(False)
    yield
    opik.set_tracing_active(previous)


def test_opiks_own_scoring_engine_gives_the_same_scores(tracing_off):
    """The metrics inside Opik's evaluation engine: the keys it passes, lists flattened, no server."""
    evaluator = metrics_evaluator.build_metrics_evaluator(
        item=None,
        regular_metrics=opik_metrics(),
        scoring_key_mapping=None,
        evaluator_model=None,
        error_tolerance=ErrorTolerance.METRIC_ERRORS,
    )
    bad = good(options=["a", "b", "c"], explanation="", correct_index=0)
    for item in (synthetic_item(), real_world_item()):
        output = ChallengeTaskOutput(challenge=Challenge(**bad), judged_difficulty=8, prompt_version="v0-terse",
                                     single_correct_answer=False, distractor_plausibility=2, requires_skill=1)
        results, _ = evaluator.compute_regular_scores(item.data(), output.as_task_output())
        assert not any(r.scoring_failed for r in results), [r.reason for r in results if r.scoring_failed]
        assert {r.name: r.value for r in results} == score_values(score_challenge(output, item))
    assert {r.name for r in results} == set(METRIC_NAMES) - {"ConceptCoverage"}  # the real-world item's


# --- aggregation ----------------------------------------------------------------------------------

ROWS = [
    ("a", 1, "synthetic", {"M1": 1.0, "M2": 0.0}),  # item mean 0.5
    ("b", 2, "synthetic", {"M1": 1.0, "M2": 1.0}),  # 1.0
    ("c", 9, "real_world", {"M1": 0.0, "M3": 0.5}),  # 0.25
    ("d", 5, "synthetic", {}),  # nothing applied
]


def test_summarise_scores_by_hand():
    summary = summarise_scores(ROWS)
    assert summary.items_scored == 3 and summary.items_without_scores == ["d"]
    assert summary.overall_mean == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    assert summary.metric_means == pytest.approx({"M1": 2 / 3, "M2": 0.5, "M3": 0.5})
    assert summary.metric_counts == {"M1": 3, "M2": 2, "M3": 1}
    assert set(summary.by_band) == {"1-2", "9-10"}
    assert summary.by_band["1-2"].items == 2 and summary.by_band["1-2"].mean == pytest.approx(0.75)
    assert summary.by_band["1-2"].metric_means == pytest.approx({"M1": 1.0, "M2": 0.5})
    assert summary.by_band["9-10"].mean == pytest.approx(0.25)
    assert summary.by_source["synthetic"].mean == pytest.approx(0.75)
    assert summary.by_source["real_world"].metric_means == {"M1": 0.0, "M3": 0.5}


def test_summarise_counts_tokens_and_flattens_for_metadata():
    rows = [ScoreRow(item_id="a", difficulty=3, source="synthetic", scores={"M1": 0.5}, input_tokens=10, output_tokens=4),
            ScoreRow(item_id="b", difficulty=4, source="synthetic", scores={"M1": 1.0}, input_tokens=5, output_tokens=1)]
    summary = summarise_scores(rows)
    assert (summary.input_tokens, summary.output_tokens) == (15, 5)
    flat = summary.flat_metadata()
    assert flat == {"items_scored": 2, "mean": 0.75, "mean/M1": 0.75, "band/3-4": 0.75, "source/synthetic": 0.75,
                    "input_tokens": 15, "output_tokens": 5, "llm_calls": 0}


def test_summarise_of_nothing():
    summary = summarise_scores([])
    assert summary.items_scored == 0 and summary.overall_mean is None and summary.by_band == {}


@pytest.mark.parametrize("value", [1.5, -0.1, math.nan])
def test_summarise_refuses_scores_outside_zero_one(value):
    with pytest.raises(ValueError, match="item x"):
        summarise_scores([("x", 3, "synthetic", {"M1": value})])


@pytest.mark.parametrize(("difficulty", "band"), [(1, "1-2"), (2, "1-2"), (3, "3-4"), (6, "5-6"), (8, "7-8"), (10, "9-10")])
def test_difficulty_bands(difficulty, band):
    assert difficulty_band(difficulty) == band


def test_difficulty_band_outside_the_scale():
    with pytest.raises(ValueError, match="11"):
        difficulty_band(11)


# --- regression verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "previous", "passed", "words"),
    [
        (0.7, None, True, "no previous"),  # exactly the threshold
        (0.6999, None, False, "under the threshold"),
        (0.7, 0.8, True, "tolerance"),  # drop exactly the tolerance (0.8 - 0.7 > 0.1 in floats)
        (0.75, 0.9, False, "dropped 0.1500"),
        (0.7999, 0.9, False, "dropped"),  # drop 0.1001
        (0.95, 0.9, True, "+0.0500"),  # an improvement
        (0.69, 0.69, False, "under the threshold"),  # stable but too low
        (None, 0.9, False, "scored no item"),
    ],
)
def test_regression_verdict_boundaries(current, previous, passed, words):
    ok, reason = regression_verdict(current, previous, threshold=0.7, tolerance=0.1)
    assert ok is passed and words in reason, reason


@pytest.mark.parametrize(("threshold", "tolerance"), [(1.2, 0.1), (-0.1, 0.1), (0.5, -0.01)])
def test_regression_verdict_refuses_bad_settings(threshold, tolerance):
    with pytest.raises(ValueError):
        regression_verdict(0.9, None, threshold=threshold, tolerance=tolerance)


# --- comparison -----------------------------------------------------------------------------------


def test_compare_side_by_side():
    a = summarise_scores(ROWS)
    b = summarise_scores([("a", 1, "synthetic", {"M1": 0.0, "M2": 0.0}), ("e", 7, "synthetic", {"M1": 1.0})])
    rows = {r.measure: r for r in comparison_rows(a, b)}
    assert rows["mean (overall)"].a == pytest.approx(1.75 / 3) and rows["mean (overall)"].b == pytest.approx(0.5)
    assert rows["M3"].b is None and rows["M3"].delta is None
    assert rows["difficulty 7-8"].a is None and rows["difficulty 7-8"].b == 1.0
    assert rows["items scored"].delta == -1
    frame = comparison_frame(a, b, "v1", "v0-terse").set_index("measure")
    assert list(frame.columns) == ["v1", "v0-terse", "delta"]
    assert frame.loc["M1"].round(3).tolist() == [0.667, 0.5, -0.167]
    assert frame.loc["M3", "v1"] == 0.5 and math.isnan(frame.loc["M3", "v0-terse"]) and math.isnan(frame.loc["M3", "delta"])
    assert frame.loc["items scored"].tolist() == [3.0, 2.0, -1.0]
