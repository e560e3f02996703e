"""Prompt-version comparison statistics against known answers and simulated experiments.

Simulations plant a known population difference, run the comparison 500 times with fixed seeds and
count how often the 95% interval covers the truth and how often the gate fails without a change.
"""

import gc
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit
from statsmodels.stats.multitest import multipletests

from skill_pipeline.core.comparison import (
    TABLE_COLUMNS,
    difference_stats,
    holm,
    paired_comparison,
    per_skill,
    results_table,
)

SIMULATIONS = 500


@pytest.fixture
def fast_holm(monkeypatch):
    """statsmodels' Holm branch calls gc.collect() (~50-80 ms in a test process); 500 runs need it off."""
    monkeypatch.setattr(gc, "collect", lambda *args, **kwargs: 0)


def long_frame(skills: np.ndarray, scores: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """Long frame from ``{(version, metric): array (items, trials)}``; item i belongs to skills[i]."""
    parts = []
    for (version, metric), values in scores.items():
        n, k = values.shape
        parts.append(pd.DataFrame({
            "skill_id": np.repeat(skills, k), "item_id": np.repeat(np.arange(n), k),
            "version": version, "trial": np.tile(np.arange(k), n), "metric": metric, "score": values.ravel(),
        }))
    return pd.concat(parts, ignore_index=True)


def simulate(rng, *, skills: int, items: int, trials: int, delta_cont: float, delta_pf: float, tau: float):
    """Scores of A and B: item level theta, skill level s, a skill-specific change v ~ N(0, tau).

    Continuous: expit(theta + s + change + trial noise); pass/fail: Bernoulli(expit(theta + s + change)).
    Returns the frame and the item-level differences of the continuous metric.
    """
    skill = np.repeat(np.arange(skills), items)
    n = skill.size
    level = rng.normal(0, 1, n) + (rng.normal(0, 0.5, skills)[skill] if skills > 1 else 0)
    change = rng.normal(0, tau, skills)[skill] if tau else np.zeros(n)
    scores, cont_means = {}, {}
    for version, on in (("A", 0.0), ("B", 1.0)):
        cont = expit(level[:, None] + on * (delta_cont + change)[..., None] + rng.normal(0, 0.5, (n, trials)))
        prob = expit(level + on * (delta_pf + change))
        scores[(version, "quality")] = cont
        scores[(version, "correct")] = (rng.random((n, trials)) < prob[:, None]).astype(float)
        cont_means[version] = cont.mean(axis=1)
    return long_frame(skill.astype(str), scores), cont_means["B"] - cont_means["A"]


def true_differences(skills: int, delta_cont: float, delta_pf: float, tau: float) -> dict[str, float]:
    """The population mean differences of ``simulate``'s model, by a large Monte Carlo (SE ~ 2e-4)."""
    rng = np.random.default_rng(12345)
    m = 2_000_000
    level = rng.normal(0, 1, m) + (rng.normal(0, 0.5, m) if skills > 1 else 0)
    change = rng.normal(0, tau, m) if tau else 0.0
    e1, e2 = rng.normal(0, 0.5, m), rng.normal(0, 0.5, m)
    return {
        "quality": float(np.mean(expit(level + delta_cont + change + e1) - expit(level + e2))),
        "correct": float(np.mean(expit(level + delta_pf + change) - expit(level))),
    }


def covers(result, truth: dict[str, float]) -> dict[str, bool]:
    return {m.metric: m.ci_low <= truth[m.metric] <= m.ci_high for m in result.metrics}


# --- Simulations -----------------------------------------------------------------------------------


def test_interval_covers_a_planted_difference_on_one_skill(fast_holm):
    truth = true_differences(1, 0.3, 0.5, 0.0)
    rng = np.random.default_rng(1)
    hits = {"quality": 0, "correct": 0}
    for _ in range(SIMULATIONS):
        frame, _ = simulate(rng, skills=1, items=60, trials=1, delta_cont=0.3, delta_pf=0.5, tau=0.0)
        for metric, hit in covers(paired_comparison(frame, "A", "B"), truth).items():
            hits[metric] += hit
    rates = {m: h / SIMULATIONS for m, h in hits.items()}
    print("one skill coverage", rates, truth)
    assert rates["quality"] >= 0.93 and rates["correct"] >= 0.93, rates


def test_pooled_interval_is_clustered_by_skill_and_covers_where_the_naive_one_does_not(fast_holm):
    """20 skills, each with its own reaction to the new prompt: items of a skill are not independent."""
    truth = true_differences(20, 0.2, 0.3, 0.4)
    rng = np.random.default_rng(2)
    clustered = {"quality": 0, "correct": 0}
    naive = 0
    for _ in range(SIMULATIONS):
        frame, diffs = simulate(rng, skills=20, items=15, trials=1, delta_cont=0.2, delta_pf=0.3, tau=0.4)
        result = paired_comparison(frame, "A", "B")
        assert result.metric("quality").interval_method.startswith("cluster-robust t")
        for metric, hit in covers(result, truth).items():
            clustered[metric] += hit
        plain = difference_stats(diffs)  # items treated as independent
        naive += plain.ci_low <= truth["quality"] <= plain.ci_high
    rates = {m: h / SIMULATIONS for m, h in clustered.items()}
    naive_rate = naive / SIMULATIONS
    print("pooled coverage", rates, "naive", naive_rate, truth)
    assert rates["quality"] >= 0.93 and rates["correct"] >= 0.93, rates
    assert naive_rate < 0.85, naive_rate


def test_gate_rarely_fails_without_a_difference(fast_holm):
    """A powered run (MDE under the effect of interest) with nothing planted: false failures <= 7%."""
    rng = np.random.default_rng(3)
    failures, verdicts = 0, []
    for _ in range(SIMULATIONS):
        frame, _ = simulate(rng, skills=1, items=150, trials=3, delta_cont=0.0, delta_pf=0.0, tau=0.0)
        result = paired_comparison(frame, "A", "B", effect_of_interest=0.1)
        failures += not result.gate_passes
        verdicts.append(result.verdict)
    rate = failures / SIMULATIONS
    print("false gate failures", rate, pd.Series(verdicts).value_counts().to_dict())
    assert rate <= 0.07, rate


def test_a_change_below_the_mde_with_few_items_is_underpowered():
    rng = np.random.default_rng(4)
    frame, _ = simulate(rng, skills=1, items=12, trials=1, delta_cont=0.1, delta_pf=0.1, tau=0.0)
    result = paired_comparison(frame, "A", "B", effect_of_interest=0.05)
    for m in result.metrics:
        assert m.mde > 0.05 and m.ci_low <= 0 <= m.ci_high
        assert m.verdict == "underpowered", m.reason
        assert "∪ bootstrap percentile (n=12 < 30)" in m.interval_method
        assert m.bootstrap_ci_low is not None and m.ci_low <= m.t_ci_low and m.ci_high >= m.t_ci_high
    assert result.verdict == "underpowered" and not result.gate_passes
    assert "cannot vouch" in result.gate_reason


# --- Known answers ---------------------------------------------------------------------------------

DIFFS = np.array([0.1, 0.2, -0.1, 0.3, 0.0, 0.2, 0.1, 0.4, -0.2, 0.1])


def _paired_frame(a: np.ndarray, b: np.ndarray, metric: str = "quality", skills=None) -> pd.DataFrame:
    skills = np.zeros(len(a), dtype=int).astype(str) if skills is None else np.asarray(skills)
    columns = {("A", metric): np.asarray(a, float)[:, None], ("B", metric): np.asarray(b, float)[:, None]}
    return long_frame(skills, columns)


def test_hand_computed_paired_t_matches_scipy():
    a = np.array([0.5, 0.4, 0.6, 0.3, 0.7, 0.5, 0.2, 0.4, 0.8, 0.6])
    b = a + DIFFS
    m = paired_comparison(_paired_frame(a, b), "A", "B").metric("quality")
    sem = DIFFS.std(ddof=1) / math.sqrt(10)
    assert m.n == 10 and m.diff == pytest.approx(0.11) and m.se == pytest.approx(sem)
    assert m.mean_baseline == pytest.approx(a.mean()) and m.mean_candidate == pytest.approx(b.mean())
    low, high = stats.t.interval(0.95, 9, loc=0.11, scale=sem)
    assert (m.t_ci_low, m.t_ci_high) == (pytest.approx(low), pytest.approx(high))
    assert m.p == pytest.approx(stats.ttest_rel(b, a).pvalue) and m.p_method == "paired t"
    assert m.mde == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sem)
    assert m.mde == pytest.approx(2.8016 * sem, rel=1e-4)
    assert m.within_item_variance_baseline is None and m.trials_max == 1 and not m.pass_fail
    # n < 30: the reported interval is the hull of the t interval and the bootstrap one.
    assert m.ci_low <= low + 1e-12 and m.ci_high >= high - 1e-12 and "bootstrap" in m.interval_method


def test_mcnemar_exact_p_equals_the_binomial_value():
    # 8 both pass, 1 only baseline, 7 only candidate, 4 both fail.
    a = np.array([1] * 8 + [1] + [0] * 7 + [0] * 4)
    b = np.array([1] * 8 + [0] + [1] * 7 + [0] * 4)
    m = paired_comparison(_paired_frame(a, b, "correct"), "A", "B").metric("correct")
    assert m.pass_fail and m.mcnemar is not None
    assert (m.mcnemar.baseline_only, m.mcnemar.candidate_only) == (1, 7)
    assert m.mcnemar.p == pytest.approx(2 * stats.binom.cdf(1, 8, 0.5)) == pytest.approx(0.0703125)
    assert m.mcnemar.p == pytest.approx(stats.binomtest(1, 8, 0.5).pvalue)
    assert m.p == m.mcnemar.p and m.p_method == "McNemar exact"
    assert m.diff == pytest.approx(6 / 20)
    # Discordant-pair MDE solves Connor's formula at psi = 8/20.
    psi, za, zb = 0.4, stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    delta = m.mcnemar.mde
    assert math.sqrt(20) * delta == pytest.approx(za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2))


def test_holm_adjusted_values(fast_holm):
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.2]) == pytest.approx([0.5, 0.4])
    ps = list(np.random.default_rng(5).random(6) / 10)
    assert holm(ps) == pytest.approx(list(multipletests(ps, method="holm")[1]))
    candidate = [0.5 + np.random.default_rng(i).normal(0.03 * i, 0.1, 40).clip(-0.5, 0.5) for i in range(3)]
    frame = pd.concat([_paired_frame(np.full(40, 0.5), b, f"m{i}") for i, b in enumerate(candidate)])
    result = paired_comparison(frame, "A", "B")
    assert [m.p_holm for m in result.metrics] == pytest.approx(holm([m.p for m in result.metrics]))


def test_cluster_robust_se_equals_the_cr1_formula():
    rng = np.random.default_rng(6)
    skills = np.repeat(np.arange(8), 10)
    d = rng.normal(0.05, 0.1, 80) + rng.normal(0, 0.1, 8)[skills]
    stats_ = difference_stats(d, skills)
    g, n = 8, 80
    sums = np.bincount(skills, weights=d - d.mean())
    cr1 = math.sqrt(g / (g - 1) * (sums**2).sum() / n**2)
    assert stats_.clustered and stats_.df == 7 and stats_.se == pytest.approx(cr1)
    tcrit = stats.t.ppf(0.975, 7)
    assert stats_.t_ci_low == pytest.approx(d.mean() - tcrit * cr1)
    assert stats_.p == pytest.approx(2 * stats.t.sf(abs(d.mean()) / cr1, 7))


def test_few_skills_fall_back_to_the_plain_se_and_say_so():
    rng = np.random.default_rng(7)
    a = rng.random(40) * 0.8
    b = a + rng.normal(0.05, 0.05, 40).clip(-a, 1 - a)
    frame = _paired_frame(a, b, skills=np.repeat(["s1", "s2", "s3", "s4"], 10))
    m = paired_comparison(frame, "A", "B").metric("quality")
    assert not m.clustered and m.clusters == 4 and m.interval_method == "paired t"
    assert any("too few clusters" in note for note in m.notes)


def test_within_item_variance_over_k_trials():
    scores = {
        ("A", "quality"): np.array([[0.2, 0.4, 0.6], [0.5, 0.5, 0.8]]),  # variances 0.04 and 0.03
        ("B", "quality"): np.array([[0.6, 0.6, 0.6], [0.7, 0.9, 1.0]]),  # variances 0 and 0.0233...
    }
    m = paired_comparison(long_frame(np.array(["s", "s"]), scores), "A", "B").metric("quality")
    assert m.trials_min == m.trials_max == 3
    assert m.within_item_variance_baseline == pytest.approx(0.035)
    assert m.within_item_variance_candidate == pytest.approx((0 + np.var([0.7, 0.9, 1.0], ddof=1)) / 2)
    assert m.mean_baseline == pytest.approx((0.4 + 0.6) / 2)
    assert m.diff == pytest.approx(((0.6 - 0.4) + (2.6 / 3 - 0.6)) / 2)


def test_no_discordant_pair_is_not_certainty():
    """All items agree: SE 0 would claim certainty; the zero-event bound keeps small runs underpowered."""
    small = paired_comparison(_paired_frame(np.ones(20), np.ones(20), "correct"), "A", "B")
    m = small.metric("correct")
    u = 1 - 0.025 ** (1 / 20)
    assert (m.ci_low, m.ci_high) == (pytest.approx(-u), pytest.approx(u)) and m.p == 1.0
    assert m.verdict == "underpowered" and not small.gate_passes
    large = paired_comparison(_paired_frame(np.ones(400), np.ones(400), "correct"), "A", "B")
    assert large.metric("correct").verdict == "no difference" and large.gate_passes


def test_a_clear_drop_fails_the_gate_and_a_clear_gain_is_better(fast_holm):
    rng = np.random.default_rng(8)
    a = rng.random(200) * 0.6 + 0.2
    worse = paired_comparison(_paired_frame(a, a - 0.1 + rng.normal(0, 0.05, 200)), "A", "B")
    assert worse.verdict == "worse" and not worse.gate_passes and "worse on quality" in worse.gate_reason
    tolerated = paired_comparison(_paired_frame(a, a - 0.1 + rng.normal(0, 0.05, 200)), "A", "B", margin=0.2)
    assert tolerated.verdict == "no difference" and tolerated.gate_passes
    better = paired_comparison(_paired_frame(a, a + 0.1 + rng.normal(0, 0.05, 200)), "A", "B")
    assert better.verdict == "better" and better.gate_passes


def test_per_skill_and_results_table(fast_holm):
    rng = np.random.default_rng(9)
    frame, _ = simulate(rng, skills=3, items=40, trials=2, delta_cont=0.3, delta_pf=0.3, tau=0.0)
    results = per_skill(frame, "A", "B")
    assert sorted(results) == ["0", "1", "2"] and all(r.skills == [s] for s, r in results.items())
    table = results_table(paired_comparison(frame, "A", "B"))
    assert list(table.columns) == TABLE_COLUMNS and sorted(table["metric"]) == ["correct", "quality"]
    assert (table["n"] == 120).all() and table["method"].str.contains("p: ").sum() == 0


def test_bad_input_is_refused():
    frame = _paired_frame(np.array([0.2, 0.4]), np.array([0.3, 1.5]))
    with pytest.raises(ValueError, match="0..1"):
        paired_comparison(frame, "A", "B")
    with pytest.raises(ValueError, match="no scores for version"):
        paired_comparison(_paired_frame(np.ones(3), np.ones(3)), "A", "C")
    with pytest.raises(ValueError, match="lacks columns"):
        paired_comparison(pd.DataFrame({"score": [0.1]}), "A", "B")


def test_module_is_pure():
    code = "import sys, skill_pipeline.core.comparison; assert 'dagster' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
